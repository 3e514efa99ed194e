"""A lab as its state file describes it: lookups and commands in its namespaces and OVSes.

`LabHandle` is the base of `Lab` (taas/lab/core.py); the other parts of a lab (traffic,
captures, server registration, agents, reset, status) are mixins built on it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taas.lab.sh import LabCommandError, netns_cmd, run
from taas.lab.state import L2_COOKIE, VM, Collector, Host, Network, view, write_state

_OFCTL_VALUE_OPTS = {"-O", "--protocols", "-F", "--flow-format", "-P", "--packet-in-format",
                     "-t", "--timeout"}


class LabHandle:
    def __init__(self, state: dict[str, Any], state_file: Path) -> None:
        self.state = state
        self.state_file = Path(state_file)

    def save(self) -> None:
        write_state(self.state, self.state_file)

    # -- lookups -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.state["name"])

    @property
    def dir(self) -> Path:
        return Path(self.state["lab_dir"])

    @property
    def l2_cookie(self) -> int:
        return int(self.state.get("l2_cookie", L2_COOKIE))

    @property
    def hosts(self) -> list[Host]:
        return [view(Host, h) for h in self.state["hosts"]]

    @property
    def vms(self) -> list[VM]:
        return [view(VM, v) for v in self.state["vms"]]

    @property
    def networks(self) -> list[Network]:
        return [view(Network, n) for n in self.state["networks"]]

    @property
    def collectors(self) -> list[Collector]:
        return [view(Collector, c) for c in self.state.get("collectors", [])]

    def host(self, name: str) -> Host:
        for h in self.state["hosts"]:
            if h["name"] == name:
                return view(Host, h)
        raise KeyError(f"no host {name!r} in lab {self.name}")

    def vm(self, name: str) -> VM:
        for v in self.state["vms"]:
            if v["name"] == name or v["port_id"] == name:
                return view(VM, v)
        raise KeyError(f"no VM {name!r} in lab {self.name}")

    def network(self, name: str) -> Network:
        for n in self.state["networks"]:
            if name in (n["name"], n["id"]):
                return view(Network, n)
        raise KeyError(f"no network {name!r} in lab {self.name}")

    def collector(self, name: str) -> Collector:
        for c in self.state.get("collectors", []):
            if c["name"] == name:
                return view(Collector, c)
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
                    return str(o["netns"])
        if target == "fabric":
            return str(self.state["fabric_netns"])
        return target

    def default_iface(self, target: str) -> str:
        """The interface a capture or frame injection uses when none is given."""
        for coll in ("vms", "collectors"):
            for o in self.state.get(coll, []):
                if o["name"] == target:
                    return str(o["interface"])
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
