"""The lab: a multi-host Neutron-like OVS cloud on one machine, built from network namespaces.

Layout (names for a lab called NAME; see docs/lab.md):

- lab dir `/tmp/taas-lab-NAME/` (state.json, one run dir per host, captures);
- fabric namespace `tlab-NAME-fabric` with Linux bridge `fab0`: the underlay;
- per host: namespace `tlab-NAME-HOST`, own ovsdb-server + ovs-vswitchd (run dir
  `/tmp/taas-lab-NAME/HOST/`), bridges br-int / br-tun / br-phy (all datapath_type=netdev),
  underlay veth `phy0` (fabric end `h<index>`), tunnel IP on br-phy;
- per VM: namespace `tlab-NAME-VM`, veth `eth0` <-> `tap<port id[:11]>` on the host's br-int;
- per collector: namespace `tlab-NAME-COL`, veth `eth0` <-> `c<index>` on the fabric.

Every veth is created directly inside its namespaces, so deleting the namespaces removes them
and nothing is ever left in the root namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taas.lab import spec as specmod
from taas.lab.capture import Capture
from taas.lab.sh import LabCommandError, cmdline, kill_pids, netns_cmd, read_pidfile, run

LAB_ROOT = Path(os.environ.get("TAAS_LAB_ROOT", "/tmp"))
NETNS_PREFIX = "tlab-"
LAB_DIR_PREFIX = "taas-lab-"
L2_COOKIE = 0x1  # cookie of the flows the lab installs as "the L2 agent"; taas must use another
LAB_BRIDGES = ("br-int", "br-tun", "br-phy")
OF_PROTOCOLS = "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"
UNDERLAY_MTU = 9000  # room for VXLAN/GRE/ERSPAN around full-size 1500-byte VM frames
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVS_DAEMONS = ("ovsdb-server", "ovs-vswitchd")
_OFCTL_VALUE_OPTS = {"-O", "--protocols", "-F", "--flow-format", "-P", "--packet-in-format",
                     "-t", "--timeout"}

_registry_lock = threading.Lock()
_live_labs: dict[str, Lab] = {}  # labs created by this process, for atexit cleanup


def lab_dir(name: str) -> Path:
    return LAB_ROOT / f"{LAB_DIR_PREFIX}{name}"


def default_state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def netns_name(lab: str, obj: str) -> str:
    return f"{NETNS_PREFIX}{lab}-{obj}"


def vxlan_port_name(ip: str) -> str:
    return "vxlan-" + "".join(f"{int(o):02x}" for o in ip.split("."))


# --------------------------------------------------------------------------------------------
# Views of the state file
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    tunnel_ip: str
    ovsdb: str  # "unix:<run_dir>/db.sock"
    run_dir: str
    local_vlans: dict[str, int] = field(default_factory=dict)  # network id -> local VLAN
    ofports: dict[str, dict[str, int]] = field(default_factory=dict)  # bridge -> port -> ofport
    vxlan_ports: dict[str, str] = field(default_factory=dict)  # remote tunnel IP -> port name
    underlay_interface: str = "phy0"
    fabric_interface: str = ""

    def mgmt(self, bridge: str) -> str:
        """The OpenFlow target of a bridge: `unix:<run_dir>/<bridge>.mgmt`."""
        return f"unix:{self.run_dir}/{bridge}.mgmt"

    def vswitchd_ctl(self) -> str:
        pid = read_pidfile(f"{self.run_dir}/ovs-vswitchd.pid")
        return f"{self.run_dir}/ovs-vswitchd.{pid}.ctl"


@dataclass(frozen=True)
class VM:
    name: str
    netns: str
    interface: str
    host: str
    network_id: str
    project_id: str
    port_id: str
    mac: str
    ip: str
    network: str = ""  # network name
    prefixlen: int = 24
    host_interface: str = ""  # the br-int port (tap...)
    local_vlan: int = 0
    ofport: int = 0  # on the host's br-int


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    project_id: str
    vni: int
    cidr: str = ""


@dataclass(frozen=True)
class Collector:
    name: str
    netns: str
    interface: str
    ip: str


def _view(cls: type, d: dict[str, Any]) -> Any:
    names = cls.__dataclass_fields__.keys()  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class PingResult:
    sent: int
    received: int
    output: str

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent

    def __bool__(self) -> bool:  # truthy only when every echo came back
        return self.ok


# --------------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------------
class Lab:
    """A running lab, described by its state file. Build with `Lab.up()`, attach with
    `Lab.load()`, remove with `lab.down()`."""

    def __init__(self, state: dict[str, Any], state_file: Path) -> None:
        self.state = state
        self.state_file = Path(state_file)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def up(cls, spec: str | Path | dict[str, Any] | None = None, name: str = "lab", *,
           hosts: int | None = None, state_file: str | Path | None = None,
           server: str | None = None, token: str | None = None, agents: bool = True,
           agent_args: Sequence[str] = (), autoclean: bool = False,
           log: Callable[[str], None] | None = None) -> Lab:
        """Build a lab. `spec`: dict, YAML/JSON path, or None for the default spec;
        `hosts`: spread the layout over N hosts; `server`+`token`: register networks/ports in
        that taas-server and (if `agents`) start one taas-agent per host; `autoclean`: tear the
        lab down when this Python process exits (tests; not the CLI, whose lab outlives it)."""
        specmod.check_name(name)
        if server and not token:
            raise ValueError("a server needs a token")
        data = specmod.load_spec(spec)
        if hosts is not None:
            data = specmod.spread(data, hosts)
        destroy(name)  # leftovers of an earlier lab with this name (crashed creator)
        plan = specmod.resolve(data, name, _underlays_in_use())
        sf = Path(state_file) if state_file else default_state_file(name)
        lab = cls(_initial_state(plan, sf), sf)
        if autoclean:
            with _registry_lock:
                _live_labs[name] = lab
        try:
            _Builder(lab, plan, log or (lambda _m: None)).build()
            lab.save()
            if server and token:
                lab.register(server, token)
                if agents:
                    lab.start_agents(server, token, extra_args=agent_args)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def load(cls, state_file: str | Path | None = None, name: str | None = None) -> Lab:
        sf = Path(state_file) if state_file else default_state_file(name or "lab")
        return cls(json.loads(sf.read_text()), sf)

    def save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.state_file)
        # A pointer in the lab dir, so `down` by name finds a state file kept elsewhere.
        ptr = lab_dir(self.name) / "state-file"
        if ptr.parent.exists() and self.state_file != default_state_file(self.name):
            ptr.write_text(str(self.state_file.resolve()))

    def down(self) -> None:
        """Remove everything this lab made (also what a crashed build left)."""
        destroy(self.name, self.state)
        with contextlib.suppress(OSError):
            self.state_file.unlink()
        with _registry_lock:
            _live_labs.pop(self.name, None)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- lookups -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.state["name"]

    @property
    def dir(self) -> Path:
        return Path(self.state["lab_dir"])

    @property
    def l2_cookie(self) -> int:
        return int(self.state.get("l2_cookie", L2_COOKIE))

    @property
    def hosts(self) -> list[Host]:
        return [_view(Host, h) for h in self.state["hosts"]]

    @property
    def vms(self) -> list[VM]:
        return [_view(VM, v) for v in self.state["vms"]]

    @property
    def networks(self) -> list[Network]:
        return [_view(Network, n) for n in self.state["networks"]]

    @property
    def collectors(self) -> list[Collector]:
        return [_view(Collector, c) for c in self.state.get("collectors", [])]

    def host(self, name: str) -> Host:
        for h in self.state["hosts"]:
            if h["name"] == name:
                return _view(Host, h)
        raise KeyError(f"no host {name!r} in lab {self.name}")

    def vm(self, name: str) -> VM:
        for v in self.state["vms"]:
            if v["name"] == name or v["port_id"] == name:
                return _view(VM, v)
        raise KeyError(f"no VM {name!r} in lab {self.name}")

    def network(self, name: str) -> Network:
        for n in self.state["networks"]:
            if name in (n["name"], n["id"]):
                return _view(Network, n)
        raise KeyError(f"no network {name!r} in lab {self.name}")

    def collector(self, name: str) -> Collector:
        for c in self.state.get("collectors", []):
            if c["name"] == name:
                return _view(Collector, c)
        raise KeyError(f"no collector {name!r} in lab {self.name}")

    def vms_on(self, host: str) -> list[VM]:
        return [v for v in self.vms if v.host == host]

    def vms_in(self, network: str) -> list[VM]:
        net = self.network(network)
        return [v for v in self.vms if v.network_id == net.id]

    def netns_of(self, target: str) -> str:
        """Namespace of a VM, host, collector, 'fabric', or a namespace name itself."""
        for coll in ("vms", "hosts", "collectors"):
            for o in self.state.get(coll, []):
                if o["name"] == target:
                    return o["netns"]
        if target == "fabric":
            return self.state["fabric_netns"]
        return target

    def _default_iface(self, target: str) -> str:
        for coll in ("vms", "collectors"):
            for o in self.state.get(coll, []):
                if o["name"] == target:
                    return o["interface"]
        for h in self.state["hosts"]:
            if h["name"] == target:
                return "phy0"
        if target == "fabric":
            return "fab0"
        raise KeyError(f"give an interface for {target!r}")

    # -- running things ----------------------------------------------------------------------
    def exec(self, target: str, cmd: str | Sequence[str], *, check: bool = True,
             timeout: float = 30, input: str | bytes | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run a command in a VM's (or host's / collector's) namespace. A string runs in sh."""
        args = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run(netns_cmd(self.netns_of(target), args), input=data,
                           capture_output=True, timeout=timeout)
        cp = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(errors="replace"),
                                         p.stderr.decode(errors="replace"))
        if check and cp.returncode != 0:
            raise LabCommandError(args, cp.returncode, cp.stdout, cp.stderr)
        return cp

    def popen(self, target: str, cmd: str | Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a background process in a namespace (killed by `down` at the latest)."""
        args = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        return subprocess.Popen(netns_cmd(self.netns_of(target), args), **kw)

    def ovs_args(self, host: str, args: Sequence[str]) -> list[str]:
        """Point an ovs-vsctl / ovs-ofctl / ovs-appctl command line at a host's OVS."""
        h = self.host(host)
        args = list(args)
        if not args:
            raise ValueError("empty OVS command")
        tool = os.path.basename(args[0])
        if tool == "ovs-vsctl":
            return [args[0], f"--db={h.ovsdb}", *args[1:]]
        if tool == "ovs-appctl":
            if any(a == "-t" or a.startswith("--target") for a in args[1:]):
                return args
            return [args[0], "-t", h.vswitchd_ctl(), *args[1:]]
        if tool == "ovs-ofctl":
            pos, skip = [], False
            for i, a in enumerate(args[1:], 1):
                if skip:
                    skip = False
                elif a in _OFCTL_VALUE_OPTS:
                    skip = True
                elif not a.startswith("-") or a == "-":
                    pos.append(i)
            if len(pos) >= 2:  # pos[0] is the command, pos[1] the switch
                i = pos[1]
                if ":" not in args[i] and "/" not in args[i]:
                    args[i] = h.mgmt(args[i])
            return args
        return args

    def ovs(self, host: str, args: Sequence[str] | str, *, check: bool = True,
            input: str | None = None, timeout: float = 30) -> str:
        """Run an OVS tool against a host's OVS; returns stdout.
        e.g. `lab.ovs("host1", ["ovs-ofctl", "dump-flows", "br-int"])`."""
        if isinstance(args, str):
            args = args.split()
        return run(self.ovs_args(host, args), check=check, input=input, timeout=timeout)

    def dump_flows(self, host: str, bridge: str, *extra: str) -> list[str]:
        """Flow lines of a bridge (no header), e.g. `dump_flows("host1", "br-tun", "table=22")`."""
        out = self.ovs(host, ["ovs-ofctl", "dump-flows", bridge, *extra])
        return [ln.strip() for ln in out.splitlines() if "actions=" in ln]

    def ofport(self, host: str, port: str) -> int:
        return int(self.ovs(host, ["ovs-vsctl", "get", "Interface", port, "ofport"]).strip())

    # -- traffic -----------------------------------------------------------------------------
    def ping(self, src_vm: str, dst: str, count: int = 3, *, interval: float = 0.05,
             timeout: float = 2.0) -> PingResult:
        """Ping from a VM; `dst` is an IP or a VM name. Truthy iff every echo came back."""
        dst_ip = self.vm(dst).ip if not re.match(r"^\d+\.\d+\.\d+\.\d+$", dst) else dst
        cp = self.exec(src_vm, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                                "-W", str(timeout), dst_ip],
                       check=False, timeout=count * (interval + timeout) + 10)
        m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", cp.stdout)
        sent, recv = (int(m.group(1)), int(m.group(2))) if m else (count, 0)
        return PingResult(sent, recv, cp.stdout + cp.stderr)

    def send_frames(self, target: str, frames: Sequence[bytes | Any], iface: str | None = None,
                    *, interval: float = 0.0) -> None:
        """Inject raw Ethernet frames (bytes or scapy packets) on a VM's interface."""
        iface = iface or self._default_iface(target)
        hexes = "\n".join(bytes(f).hex() for f in frames)
        self.exec(target, [sys.executable, "-c", _SENDER, iface, str(interval)], input=hexes)

    def tcp_transfer(self, src_vm: str, dst_vm: str, nbytes: int = 1_000_000, *,
                     port: int = 5201, timeout: float = 20) -> int:
        """Send `nbytes` over TCP from src_vm to dst_vm; return the bytes the server received."""
        dst_ip = self.vm(dst_vm).ip
        srv = self.popen(dst_vm, [sys.executable, "-c", _TCP_SERVER, dst_ip, str(port),
                                  str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        try:
            assert srv.stdout is not None
            ready = srv.stdout.readline().strip()
            if ready != "ready":
                err = srv.stderr.read() if srv.stderr else ""
                raise RuntimeError(f"TCP server did not start: {err}")
            self.exec(src_vm, [sys.executable, "-c", _TCP_CLIENT, dst_ip, str(port), str(nbytes),
                               str(timeout)], check=False, timeout=timeout + 5)
            out, _ = srv.communicate(timeout=timeout + 5)
            return int(out.strip() or 0)
        finally:
            if srv.poll() is None:
                srv.kill()
                srv.wait()

    @contextlib.contextmanager
    def capture(self, target: str, iface: str | None = None, bpf: str | None = None, *,
                direction: str | None = None, settle: bool = True) -> Iterator[Capture]:
        """tcpdump on `iface` (default: the VM's / collector's interface) of a VM, host,
        collector or namespace. Yields once tcpdump listens; on exit waits for in-flight
        frames (`settle`), stops, and fills `cap.frames` (raw frame bytes)."""
        with self.captures({target: (iface, bpf)}, direction=direction, settle=settle) as caps:
            yield caps[target]

    @contextlib.contextmanager
    def captures(self, targets: Sequence[str] | dict[str, Any], *,
                 direction: str | None = None, settle: bool = True
                 ) -> Iterator[dict[str, Capture]]:
        """Several captures started in parallel. `targets`: names (default interface) or a dict
        name -> iface | (iface, bpf). Yields {name: Capture}."""
        if not isinstance(targets, dict):
            targets = {t: None for t in targets}
        capdir = self.dir / "captures"
        capdir.mkdir(parents=True, exist_ok=True)
        caps: dict[str, Capture] = {}
        try:
            for t, spec in targets.items():
                iface, bpf = spec if isinstance(spec, tuple) else (spec, None)
                fd, path = tempfile.mkstemp(prefix="cap-", suffix=".pcap", dir=capdir)
                os.close(fd)
                c = Capture(self.netns_of(t), iface or self._default_iface(t), Path(path), bpf,
                            direction)
                caps[t] = c
                c.start()
            for c in caps.values():
                c.wait_listening()
            yield caps
            if settle and caps:
                _settle_all(list(caps.values()))
        finally:
            for c in caps.values():
                c.stop()

    # -- server registration and agents ------------------------------------------------------
    def register(self, server: str, token: str, timeout: float = 10) -> None:
        """Register the lab's networks and ports in a taas-server inventory (Neutron format)."""
        import httpx

        hdr = {"X-Auth-Token": token}
        # The token is kept so that `down` (even of a crashed lab) can unregister.
        reg: dict[str, Any] = {"url": server, "token": token, "networks": [], "ports": []}
        self.state["server"] = reg
        with httpx.Client(base_url=server, headers=hdr, timeout=timeout) as c:
            for n in self.state["networks"]:
                body = {"network": {
                    "id": n["id"], "name": n["name"], "project_id": n["project_id"],
                    "tenant_id": n["project_id"], "provider:network_type": "vxlan",
                    "provider:segmentation_id": n["vni"], "admin_state_up": True}}
                r = c.post("/v2.0/networks", json=body)
                # 409: registered before (a shared server, a lab reset in between): keep it.
                if r.status_code >= 400 and r.status_code != 409:
                    raise RuntimeError(f"register network {n['name']}: {r.status_code} {r.text}")
                reg["networks"].append(n["id"])
            for v in self.state["vms"]:
                body = {"port": {
                    "id": v["port_id"], "name": v["name"], "network_id": v["network_id"],
                    "project_id": v["project_id"], "tenant_id": v["project_id"],
                    "mac_address": v["mac"], "device_owner": "compute:nova",
                    "device_id": v.get("device_id", ""), "admin_state_up": True,
                    "fixed_ips": [{"ip_address": v["ip"]}]}}
                r = c.post("/v2.0/ports", json=body)
                if r.status_code >= 400 and r.status_code != 409:
                    raise RuntimeError(f"register port {v['name']}: {r.status_code} {r.text}")
                reg["ports"].append(v["port_id"])
        self.save()

    def unregister(self, timeout: float = 3) -> None:
        _unregister(self.state, timeout)
        self.state.pop("server", None)
        self.save()

    def start_agents(self, server: str, token: str, hosts: Sequence[str] | None = None,
                     extra_args: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Start one taas-agent per host (root namespace; it reaches OVS through sockets)."""
        exe = shutil.which("taas-agent")
        base = [exe] if exe else [sys.executable, "-c",
                                  "import sys; from taas.agent.cli import main; sys.exit(main())"]
        agents = self.state.setdefault("agents", [])
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        started: list[subprocess.Popen[bytes]] = []
        for h in self.state["hosts"]:
            if hosts is not None and h["name"] not in hosts:
                continue
            logf = f"{h['run_dir']}/taas-agent.log"
            cmd = [*base, "--host", h["name"], "--server", server, "--token", token,
                   "--ovsdb", h["ovsdb"], "--ovs-rundir", h["run_dir"],
                   "--tunnel-ip", h["tunnel_ip"], "--log-file", logf, *extra_args]
            with open(logf, "ab") as out:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
            agents.append({"host": h["name"], "pid": p.pid, "log": logf})
            started.append(p)
        self.save()
        # Catch an agent that cannot even start (bad arguments, import error) right here.
        time.sleep(0.2)
        dead = [(p, a) for p, a in zip(started, agents[-len(started):], strict=True)
                if p.poll() is not None]
        if dead:
            p, a = dead[0]
            tail = Path(a["log"]).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"taas-agent for {a['host']} exited rc={p.returncode}:\n{tail}")
        return agents

    def stop_agents(self, hosts: Sequence[str] | None = None) -> None:
        keep, stop = [], []
        for a in self.state.get("agents", []):
            (stop if hosts is None or a["host"] in hosts else keep).append(a)
        kill_pids([a["pid"] for a in stop if "agent" in cmdline(a["pid"])])
        self.state["agents"] = keep
        self.save()

    # -- reset -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the state right after `up` (docs/lab.md, "Reset contract"): agents stopped,
        server registration forgotten, processes in VMs/collectors killed, every bridge but
        br-int/br-tun/br-phy deleted, every port the lab did not make deleted, Mirrors cleared,
        every flow whose cookie is not the L2 cookie deleted and the L2 flows re-added, MAC
        tables flushed, VM ports' tag/external_ids restored, tunnel neighbours refreshed."""
        if self.state.get("agents"):
            self.stop_agents()
        self.state.pop("server", None)
        # Whatever a test left running in a VM or collector (servers, captures).
        pids: set[int] = set()
        for ns in [v.netns for v in self.vms] + [c.netns for c in self.collectors]:
            out = run(["ip", "netns", "pids", ns], check=False)
            pids |= {int(p) for p in out.split() if p.isdigit()}
        kill_pids(pids)
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as ex:
            list(ex.map(self._reset_host, self.hosts))
        self.save()

    def _reset_host(self, h: Host) -> None:
        hd = next(x for x in self.state["hosts"] if x["name"] == h.name)
        expected: dict[str, set[str]] = {b: set(p) for b, p in hd["ofports"].items()}
        expected["br-phy"] = {"phy0"}
        out = self.ovs(h.name, ["ovs-vsctl", "--format=json", "--", "--columns=name,ports",
                                "list", "Bridge"])
        ports_out = self.ovs(h.name, ["ovs-vsctl", "--format=json", "--", "--columns=_uuid,name",
                                      "list", "Port"])
        port_names = {r[0][1]: r[1] for r in json.loads(ports_out)["data"]}
        cmds: list[str] = []
        for name_, ports in json.loads(out)["data"]:
            if name_ not in LAB_BRIDGES:
                cmds += ["--", "--if-exists", "del-br", name_]
                continue
            uuids = [u[1] for u in ports[1]] if ports[0] == "set" else [ports[1]]
            for u in uuids:
                pn = port_names.get(u)
                if pn and pn != name_ and pn not in expected.get(name_, set()):
                    cmds += ["--", "--if-exists", "del-port", name_, pn]
        for b in LAB_BRIDGES:
            cmds += ["--", "clear", "Bridge", b, "mirrors"]
        vm_states = [v for v in self.state["vms"] if v["host"] == h.name]
        for v in vm_states:  # re-plug (if a test unplugged it) and restore tag/external_ids
            cmds += _vm_port_cmd(v, v["ofport"])
        self.ovs(h.name, ["ovs-vsctl", *cmds])
        now = json.loads(self.ovs(h.name, ["ovs-vsctl", "--format=json", "--",
                                           "--columns=name,ofport", "list", "Interface"]))
        ofp = {r[0]: r[1] for r in now["data"]}
        broken = {p: (n, ofp.get(p)) for p, n in hd["ofports"]["br-int"].items()
                  if ofp.get(p) != n}
        if broken:
            raise RuntimeError(f"lab {self.name} host {h.name}: cannot restore br-int ports "
                               f"{broken} (expected, actual ofport); use a fresh lab")
        for b in LAB_BRIDGES:
            # Delete by each foreign cookie, then re-add the L2 flows (restores any the test
            # changed or deleted) in the same form as `up` installed them.
            cookies = {m.group(1) for f in self.dump_flows(h.name, b)
                       if (m := re.match(r"cookie=(0x[0-9a-f]+)", f))}
            for ck in sorted(cookies - {f"{self.l2_cookie:#x}"}):
                self.ovs(h.name, ["ovs-ofctl", "del-flows", b, f"cookie={ck}/-1"])
            flows = Path(h.run_dir, f"{b}.l2flows").read_text()
            self.ovs(h.name, ["ovs-ofctl", "add-flows", b, "-"], input=flows)
            self.ovs(h.name, ["ovs-appctl", "fdb/flush", b], check=False)
        self._tunnel_neighbors(h)

    def _tunnel_neighbors(self, h: Host) -> None:
        """Give OVS's userspace tunnel code the underlay MAC of every other host and collector.

        OVS only learns them by snooping ARP on br-phy, and drops the packet that triggers its
        own ARP request: the first mirrored or tunnelled frame would be lost. Entries still age
        out (3600 s at most on OVS 3.1); `reset()` refreshes them."""
        ctl = h.vswitchd_ctl()
        run(["ovs-appctl", "-t", ctl, "tnl/neigh/aging", "3600"])
        peers = [(o["tunnel_ip"], o["underlay_mac"]) for o in self.state["hosts"]
                 if o["name"] != h.name and o.get("underlay_mac")]
        peers += [(c["ip"], c["mac"]) for c in self.state.get("collectors", []) if c.get("mac")]
        for ip, mac in peers:
            run(["ovs-appctl", "-t", ctl, "tnl/neigh/set", "br-phy", ip, mac])

    # -- status ------------------------------------------------------------------------------
    def status(self) -> str:
        lines = [f"lab {self.name}  (state {self.state_file}, underlay "
                 f"{self.state['underlay_cidr']}, fabric netns {self.state['fabric_netns']})"]
        for h in self.hosts:
            alive = {d: bool(read_pidfile(f"{h.run_dir}/{d}.pid") and
                             h.run_dir in cmdline(read_pidfile(f"{h.run_dir}/{d}.pid") or 0))
                     for d in OVS_DAEMONS}
            lines.append(f"host {h.name}: netns {h.netns} tunnel_ip {h.tunnel_ip} "
                         f"ovsdb {h.ovsdb} daemons "
                         + " ".join(f"{d}={'up' if ok else 'DOWN'}" for d, ok in alive.items()))
            try:
                br = self.ovs(h.name, ["ovs-vsctl", "list-br"]).split()
            except LabCommandError:
                br = ["?"]
            lines.append(f"  bridges: {' '.join(br)}")
            for b, ports in h.ofports.items():
                by_ofport = sorted(ports.items(), key=lambda x: x[1])
                lines.append(f"  {b}: " + " ".join(f"{p}={n}" for p, n in by_ofport))
        nets = {n.id: n for n in self.networks}
        for n in self.networks:
            lines.append(f"network {n.name}: id {n.id} project {n.project_id} vni {n.vni} "
                         f"cidr {n.cidr}")
        for v in self.vms:
            lines.append(f"vm {v.name}: host {v.host} net {nets[v.network_id].name} ip {v.ip} "
                         f"mac {v.mac} port {v.port_id} ({v.host_interface} ofport {v.ofport} "
                         f"vlan {v.local_vlan})")
        for c in self.collectors:
            lines.append(f"collector {c.name}: netns {c.netns} ip {c.ip}")
        for a in self.state.get("agents", []):
            lines.append(f"agent {a['host']}: pid {a['pid']} log {a['log']}")
        return "\n".join(lines)


def _settle_all(caps: Sequence[Capture], quiet: float = 0.15, max_wait: float = 2.0) -> None:
    """Wait until no capture has grown for `quiet` seconds: frames still crossing the
    userspace datapath get written before tcpdump is stopped."""
    deadline = time.monotonic() + max_wait
    last = [c._size() for c in caps]
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = [c._size() for c in caps]
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            return


# --------------------------------------------------------------------------------------------
# Scripts run inside namespaces (plain python, no scapy: fast start)
# --------------------------------------------------------------------------------------------
_SENDER = """
import socket, sys, time
iface, interval = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for line in sys.stdin.read().split():
    s.send(bytes.fromhex(line))
    if interval:
        time.sleep(interval)
"""

_TCP_SERVER = """
import socket, sys
ip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port)); srv.listen(1); srv.settimeout(timeout)
print("ready", flush=True)
n = 0
try:
    c, _ = srv.accept(); c.settimeout(timeout)
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
except OSError:
    pass
print(n, flush=True)
"""

_TCP_CLIENT = """
import socket, sys
ip, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((ip, port), timeout=timeout)
buf = b"x" * 65536
while n > 0:
    k = s.send(buf[:min(n, len(buf))]); n -= k
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
"""


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _initial_state(plan: specmod.Plan, state_file: Path) -> dict[str, Any]:
    d = lab_dir(plan.name)
    nets = {n.name: n for n in plan.networks}
    return {
        "name": plan.name,
        "lab_dir": str(d),
        "state_file": str(state_file),
        "l2_cookie": L2_COOKIE,
        "underlay_cidr": plan.underlay_cidr,
        "fabric_netns": netns_name(plan.name, "fabric"),
        "fabric_bridge": "fab0",
        "created": time.time(),
        "hosts": [{
            "name": h.name, "netns": netns_name(plan.name, h.name), "tunnel_ip": h.tunnel_ip,
            "ovsdb": f"unix:{d}/{h.name}/db.sock", "run_dir": f"{d}/{h.name}",
            "underlay_interface": "phy0", "fabric_interface": f"h{h.index}",
            "local_vlans": {nets[n].id: t for n, t in h.local_vlans.items()},
            "ofports": {}, "vxlan_ports": {},
        } for h in plan.hosts],
        "networks": [{"id": n.id, "name": n.name, "project_id": n.project_id, "vni": n.vni,
                      "cidr": n.cidr} for n in plan.networks],
        "vms": [{
            "name": v.name, "netns": netns_name(plan.name, v.name), "interface": "eth0",
            "host": v.host, "network_id": v.network_id, "project_id": v.project_id,
            "port_id": v.port_id, "mac": v.mac, "ip": v.ip, "network": v.network,
            "prefixlen": v.prefixlen, "host_interface": "tap" + v.port_id[:11],
            "device_id": str(uuid.uuid5(specmod.LAB_UUID_NS, f"{plan.name}/vm/{v.name}")),
            "local_vlan": next(h.local_vlans[v.network] for h in plan.hosts if h.name == v.host),
            "ofport": 0,
        } for v in plan.vms],
        "collectors": [{"name": c.name, "netns": netns_name(plan.name, c.name),
                        "interface": "eth0", "ip": c.ip, "fabric_interface": f"c{c.index}"}
                       for c in plan.collectors],
        "agents": [],
    }


def _vm_port_cmd(v: dict[str, Any], ofport: int) -> list[str]:
    """ovs-vsctl args plugging a VM's tap into br-int the way Nova/os-vif does (fixed ofport:
    `reset()` can re-plug it under the same number)."""
    t = v["host_interface"]
    return ["--", "--may-exist", "add-port", "br-int", t, "--", "set", "Port", t,
            f"tag={v['local_vlan']}", "--", "set", "Interface", t, f"ofport_request={ofport}",
            f"external_ids:iface-id={v['port_id']}", f"external_ids:attached-mac={v['mac']}",
            "external_ids:iface-status=active", f"external_ids:vm-uuid={v['device_id']}"]


def _link_mac(netns: str, dev: str) -> str:
    return json.loads(run(["ip", "-n", netns, "-j", "link", "show", "dev", dev]))[0]["address"]


_NO_IPV6 = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1"]


class _Builder:
    def __init__(self, lab: Lab, plan: specmod.Plan, log: Callable[[str], None]) -> None:
        self.lab, self.plan, self.log = lab, plan, log
        self.s = lab.state
        self.prefixlen = int(plan.underlay_cidr.split("/")[1])

    def _netns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        run(netns_cmd(ns, _NO_IPV6))
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def build(self) -> None:
        t0 = time.monotonic()
        d = Path(self.s["lab_dir"])
        d.mkdir(parents=True, exist_ok=True)
        self.lab.save()  # early: a crash from here on can be cleaned up by name
        fab = self.s["fabric_netns"]
        # Namespaces one after another: concurrent `ip netns add` can race on the first
        # mount of /run/netns.
        for ns in [fab] + [h["netns"] for h in self.s["hosts"]] + \
                [v["netns"] for v in self.s["vms"]] + [c["netns"] for c in self.s["collectors"]]:
            self._netns(ns)
        run(["ip", "-n", fab, "link", "add", "fab0", "mtu", str(UNDERLAY_MTU), "type",
             "bridge", "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", fab, "link", "set", "fab0", "up"])
        workers = min(8, 2 + len(self.s["vms"]))
        with ThreadPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(self._host_daemons, h) for h in self.s["hosts"]]
            futs += [ex.submit(self._vm, v) for v in self.s["vms"]]
            futs += [ex.submit(self._collector, c) for c in self.s["collectors"]]
            for f in futs:
                f.result()
            futs = [ex.submit(self._host_ovs, h) for h in self.s["hosts"]]
            for f in futs:
                f.result()
            for h in self.s["hosts"]:
                h["underlay_mac"] = _link_mac(h["netns"], "br-phy")
            for c in self.s["collectors"]:
                c["mac"] = _link_mac(c["netns"], "eth0")
            list(ex.map(self.lab._tunnel_neighbors, self.lab.hosts))
        self.s["build_seconds"] = round(time.monotonic() - t0, 3)
        self.log(f"lab {self.s['name']} up in {self.s['build_seconds']}s")

    def _host_daemons(self, h: dict[str, Any]) -> None:
        ns, rd = h["netns"], h["run_dir"]
        Path(rd).mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", f"{rd}/conf.db", OVS_SCHEMA])
        env = {**os.environ, "OVS_RUNDIR": rd, "OVS_DBDIR": rd, "OVS_LOGDIR": rd,
               "OVS_PKGDATADIR": "/usr/share/openvswitch"}
        common = ["--detach", "--no-chdir", "-vconsole:off", "-vsyslog:off"]
        run(netns_cmd(ns, ["ovsdb-server", f"{rd}/conf.db", f"--remote=punix:{rd}/db.sock",
                           f"--pidfile={rd}/ovsdb-server.pid", f"--log-file={rd}/ovsdb-server.log",
                           f"--unixctl={rd}/ovsdb-server.ctl", *common]), env=env)
        run(["ovs-vsctl", f"--db={h['ovsdb']}", "--no-wait", "init"])
        run(netns_cmd(ns, ["ovs-vswitchd", h["ovsdb"], f"--pidfile={rd}/ovs-vswitchd.pid",
                           f"--log-file={rd}/ovs-vswitchd.log", *common]), env=env)
        # Underlay veth straight into both namespaces.
        fab = self.s["fabric_netns"]
        run(["ip", "link", "add", "phy0", "netns", ns, "mtu", str(UNDERLAY_MTU), "type", "veth",
             "peer", "name", h["fabric_interface"], "netns", fab, "mtu", str(UNDERLAY_MTU)])
        run(["ip", "-n", fab, "link", "set", h["fabric_interface"], "master", "fab0", "up"])
        run(["ip", "-n", ns, "link", "set", "phy0", "up"])

    def _vm(self, v: dict[str, Any]) -> None:
        host = next(h for h in self.s["hosts"] if h["name"] == v["host"])
        run(["ip", "link", "add", "eth0", "netns", v["netns"], "address", v["mac"], "type",
             "veth", "peer", "name", v["host_interface"], "netns", host["netns"]])
        run(netns_cmd(v["netns"], ["sh", "-ec",
            f"ip addr add {v['ip']}/{v['prefixlen']} dev eth0; ip link set eth0 up; "
            # userspace datapath: with tx checksum offload TCP carries 0 bytes
            "ethtool -K eth0 tx off >/dev/null"]))
        run(["ip", "-n", host["netns"], "link", "set", v["host_interface"], "up"])

    def _collector(self, c: dict[str, Any]) -> None:
        fab = self.s["fabric_netns"]
        run(["ip", "link", "add", "eth0", "netns", c["netns"], "mtu", str(UNDERLAY_MTU), "type",
             "veth", "peer", "name", c["fabric_interface"], "netns", fab, "mtu",
             str(UNDERLAY_MTU)])
        run(["ip", "-n", fab, "link", "set", c["fabric_interface"], "master", "fab0", "up"])
        run(netns_cmd(c["netns"], ["sh", "-ec",
            f"ip addr add {c['ip']}/{self.prefixlen} dev eth0; ip link set eth0 up; "
            "ethtool -K eth0 tx off >/dev/null"]))

    def _host_ovs(self, h: dict[str, Any]) -> None:
        db = f"--db={h['ovsdb']}"
        others = [x for x in self.s["hosts"] if x["name"] != h["name"]]
        vms = [v for v in self.s["vms"] if v["host"] == h["name"]]
        c: list[str] = []
        for b in LAB_BRIDGES:
            # secure: no implicit NORMAL flow with cookie 0; the lab installs its own.
            c += ["--", "add-br", b, "--", "set", "Bridge", b, "datapath_type=netdev",
                  "fail_mode=secure", f"protocols={OF_PROTOCOLS}",
                  f"external_ids:taas-lab={self.s['name']}"]
        # A fixed MAC for br-phy: OVS would otherwise pick one from its ports and may change
        # it, invalidating the tunnel neighbour entries the other hosts hold.
        ul_mac = "02:00:" + ":".join(f"{int(o):02x}" for o in h["tunnel_ip"].split("."))
        c += ["--", "set", "Bridge", "br-phy", f"other_config:hwaddr={ul_mac}"]
        c += ["--", "add-port", "br-phy", "phy0"]
        c += ["--", "add-port", "br-int", "patch-tun", "--", "set", "Interface", "patch-tun",
              "type=patch", "options:peer=patch-int", "ofport_request=1"]
        c += ["--", "add-port", "br-tun", "patch-int", "--", "set", "Interface", "patch-int",
              "type=patch", "options:peer=patch-tun", "ofport_request=1"]
        vx: dict[str, str] = {}
        for i, o in enumerate(others, 2):
            pn = vxlan_port_name(o["tunnel_ip"])
            vx[o["tunnel_ip"]] = pn
            c += ["--", "add-port", "br-tun", pn, "--", "set", "Interface", pn, "type=vxlan",
                  f"options:remote_ip={o['tunnel_ip']}", f"options:local_ip={h['tunnel_ip']}",
                  "options:key=flow", f"ofport_request={i}"]
        for i, v in enumerate(vms, 2):
            c += _vm_port_cmd(v, i)
        run(["ovs-vsctl", db, "--timeout=60", *c])  # waits until vswitchd applied it
        out = run(["ovs-vsctl", db, "--format=json", "--", "--columns=name,ofport", "list",
                   "Interface"])
        ofp = {r[0]: r[1] for r in json.loads(out)["data"]}
        h["vxlan_ports"] = vx
        h["ofports"] = {
            "br-int": {"patch-tun": ofp["patch-tun"],
                       **{v["host_interface"]: ofp[v["host_interface"]] for v in vms}},
            "br-tun": {"patch-int": ofp["patch-int"], **{pn: ofp[pn] for pn in vx.values()}},
            "br-phy": {"phy0": ofp["phy0"]},
        }
        for v in vms:
            v["ofport"] = ofp[v["host_interface"]]
        bad = {k: n for k, n in ofp.items() if not isinstance(n, int) or n < 0}
        if bad:
            raise RuntimeError(f"host {h['name']}: ports without ofport: {bad}")
        flows = self._l2_flows(h)
        for b, text in flows.items():
            Path(h["run_dir"], f"{b}.l2flows").write_text(text)
            run(["ovs-ofctl", "add-flows", f"unix:{h['run_dir']}/{b}.mgmt", "-"], input=text)
        run(["ip", "-n", h["netns"], "addr", "add", f"{h['tunnel_ip']}/{self.prefixlen}", "dev",
             "br-phy"])
        run(["ip", "-n", h["netns"], "link", "set", "br-phy", "mtu", str(UNDERLAY_MTU), "up"])

    def _l2_flows(self, h: dict[str, Any]) -> dict[str, str]:
        """The flows a Neutron OVS agent would install (LAB.md table), with the lab's cookie."""
        ck = f"cookie={L2_COOKIE:#x}"
        tun = h["ofports"]["br-tun"]
        patch_int = tun["patch-int"]
        vx_ofports = [tun[p] for p in h["vxlan_ports"].values()]
        nets = {n["id"]: n for n in self.s["networks"]}
        t: list[str] = [f"{ck},table=0,priority=1,in_port={patch_int},actions=resubmit(,2)"]
        t += [f"{ck},table=0,priority=1,in_port={p},actions=resubmit(,4)" for p in vx_ofports]
        t += [f"{ck},table=0,priority=0,actions=drop",
              f"{ck},table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,"
              "actions=resubmit(,20)",
              f"{ck},table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,"
              "actions=resubmit(,22)",
              f"{ck},table=4,priority=0,actions=drop",
              f"{ck},table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
              f"{ck},NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
              "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
              f"output:OXM_OF_IN_PORT[]),output:{patch_int}",
              f"{ck},table=20,priority=0,actions=resubmit(,22)",
              f"{ck},table=22,priority=0,actions=drop"]
        for net_id, vlan in h["local_vlans"].items():
            vni = nets[net_id]["vni"]
            t.append(f"{ck},table=4,priority=1,tun_id={vni:#x},"
                     f"actions=mod_vlan_vid:{vlan},resubmit(,10)")
            if vx_ofports:
                outs = ",".join(f"output:{p}" for p in vx_ofports)
                t.append(f"{ck},table=22,priority=1,dl_vlan={vlan},"
                         f"actions=strip_vlan,set_tunnel:{vni:#x},{outs}")
        return {
            "br-int": f"{ck},table=0,priority=0,actions=NORMAL\n",
            "br-tun": "\n".join(t) + "\n",
            "br-phy": f"{ck},table=0,priority=0,actions=NORMAL\n",
        }


# --------------------------------------------------------------------------------------------
# Teardown (by state, or by name for leftovers of a crashed lab)
# --------------------------------------------------------------------------------------------
def _unregister(state: dict[str, Any], timeout: float = 3) -> None:
    reg = state.get("server")
    if not reg:
        return
    token = reg.get("token")
    if not token:
        return
    try:
        import httpx

        with httpx.Client(base_url=reg["url"], headers={"X-Auth-Token": token},
                          timeout=timeout) as c:
            for p in reg.get("ports", []):
                c.delete(f"/v2.0/ports/{p}")
            for n in reg.get("networks", []):
                c.delete(f"/v2.0/networks/{n}")
    except Exception:  # noqa: BLE001 - the server may be gone already; nothing to undo then
        pass


def _underlays_in_use() -> set[str]:
    used = set()
    for sf in LAB_ROOT.glob(f"{LAB_DIR_PREFIX}*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            used.add(json.loads(sf.read_text())["underlay_cidr"])
    return used


def list_labs() -> list[str]:
    """Names of every lab on this machine (lab dirs and namespaces)."""
    names: set[str] = set()
    if LAB_ROOT.exists():
        for p in LAB_ROOT.iterdir():
            if p.name.startswith(LAB_DIR_PREFIX) and p.is_dir():
                names.add(p.name[len(LAB_DIR_PREFIX):])
    for ns in _netns_list():
        if ns.startswith(NETNS_PREFIX):
            names.add(ns[len(NETNS_PREFIX):].split("-", 1)[0])
    return sorted(n for n in names if specmod.NAME_RE.match(n))


def _netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _lab_processes(name: str, state: dict[str, Any] | None) -> set[int]:
    d = str(lab_dir(name))
    pids: set[int] = set()
    for a in (state or {}).get("agents", []):
        if "agent" in cmdline(a["pid"]):
            pids.add(a["pid"])
    for pf in Path(d).glob("*/*.pid") if Path(d).exists() else []:
        pid = read_pidfile(str(pf))
        if pid and d in cmdline(pid):
            pids.add(pid)
    # Daemons whose pidfile was never written, agents of a lost state file, captures.
    for ent in os.listdir("/proc"):
        if ent.isdigit():
            cl = cmdline(int(ent))
            if f"{d}/" in cl and any(k in cl for k in ("ovs", "agent", "tcpdump")):
                pids.add(int(ent))
    return pids


def destroy(name: str, state: dict[str, Any] | None = None) -> None:
    """Remove a lab by name: processes, namespaces (and their veths), lab dir, server entries."""
    specmod.check_name(name)
    d = lab_dir(name)
    if state is None:
        for sf in (d / "state.json",):
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(sf.read_text())
        ptr = d / "state-file"
        if state is None and ptr.exists():
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(Path(ptr.read_text().strip()).read_text())
    prefix = f"{NETNS_PREFIX}{name}-"
    namespaces = [ns for ns in _netns_list() if ns.startswith(prefix)]
    pids = _lab_processes(name, state)
    for ns in namespaces:
        out = run(["ip", "netns", "pids", ns], check=False)
        pids |= {int(p) for p in out.split() if p.isdigit()}
    kill_pids(pids)
    if state:  # after the agents are gone, so that none reports the ports again
        _unregister(state)
    for ns in namespaces:
        run(["ip", "netns", "delete", ns], check=False)
    shutil.rmtree(d, ignore_errors=True)
    if state and state.get("state_file"):
        with contextlib.suppress(OSError):
            Path(state["state_file"]).unlink()


def destroy_all() -> list[str]:
    names = list_labs()
    for n in names:
        destroy(n)
    return names


def _atexit_cleanup() -> None:
    with _registry_lock:
        labs = list(_live_labs.values())
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.down()


import atexit  # noqa: E402 - registered once the module's functions exist

atexit.register(_atexit_cleanup)

__all__ = ["Lab", "Host", "VM", "Network", "Collector", "PingResult", "Capture", "L2_COOKIE",
           "destroy", "destroy_all", "list_labs", "lab_dir", "default_state_file", "asdict"]
