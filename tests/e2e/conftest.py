"""The whole system for end-to-end tests: a real taas-server, a 2-host lab, one real
taas-agent per host (started by the lab), and helpers to drive faults and look at packets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from taas.agent.ovs.tables import COOKIE
from taas.lab import UNDERLAY_MTU, Lab
from taas.lab.builder import start_ovs, vm_veth
from taas.lab.pytest_plugin import unique_name
from taas.lab.sh import kill_pids, netns_cmd, read_pidfile
from taas.testing.server import ServerProcess, run_server
from taas.testing.wait import wait_until

TAAS_COOKIE = f"cookie={COOKIE:#x}/-1"
TIMINGS: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    """Keep a convergence time for the summary at the end of the run."""
    TIMINGS[name] = seconds
    print(f"[e2e] {name}: {seconds * 1000:.0f} ms")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("taas e2e convergence times")
    for name, s in TIMINGS.items():
        terminalreporter.write_line(f"{name:<55} {s * 1000:8.0f} ms")
    out = os.environ.get("TAAS_E2E_RESULTS")
    if out:
        Path(out).write_text(json.dumps(TIMINGS, indent=2))


def icmp(frame: bytes) -> tuple[str, str, int] | None:
    """(src ip, dst ip, icmp type) of an untagged IPv4 ICMP frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    ihl = (frame[14] & 0x0F) * 4
    src = ".".join(str(b) for b in frame[26:30])
    dst = ".".join(str(b) for b in frame[30:34])
    return src, dst, frame[14 + ihl]


def count_icmp(frames: list[bytes], src: str, dst: str, kind: int = 8) -> int:
    return sum(1 for f in frames if icmp(f) == (src, dst, kind))


class System:
    """taas-server + lab + agents, and what the tests do with them."""

    def __init__(self, server: ServerProcess, lab: Lab) -> None:
        self.server = server
        self.lab = lab
        self.api = server.client("a-member")  # the tenant owning net-a (mon, vm1, vm2, vm3)
        self.admin = server.client("admin")
        self.token = server.tokens["service"]

    # -- API ----------------------------------------------------------------------------------
    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        single = kind[:-1]
        r = self.api.post(f"/v2.0/taas/{kind}", json={single: body})
        assert r.status_code == 201, r.text
        return r.json()[single]

    def get(self, kind: str, rid: str) -> dict[str, Any] | None:
        r = self.api.get(f"/v2.0/taas/{kind}/{rid}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()[kind[:-1]]

    def status(self, kind: str, rid: str) -> str | None:
        row = self.get(kind, rid)
        return row["status"] if row else None

    def wait_status(self, kind: str, rid: str, status: str | None,
                    timeout: float = 15.0) -> float:
        t0 = time.monotonic()
        wait_until(lambda: self.status(kind, rid) == status, timeout,
                   what=f"{kind} {rid} {status}")
        return time.monotonic() - t0

    # -- agents ---------------------------------------------------------------------------------
    def caught_up(self, host: str) -> bool:
        """The host's agent has applied and reported the server's current state for it."""
        desired = self.admin.get(f"/v2.0/taas-agents/{host}/desired-state",
                                 params={"timeout": 0})
        assert desired.status_code == 200, desired.text
        agents = self.admin.get("/v2.0/agents", params={"host": host})
        assert agents.status_code == 200, agents.text
        reported = [a["reported_revision"] for a in agents.json()["agents"] if a["host"] == host]
        return bool(reported) and reported[0] >= desired.json()["desired_state"]["revision"]

    def wait_caught_up(self, *hosts: str, timeout: float = 15.0) -> None:
        """Sentinel before asserting that something did NOT happen: every given agent has
        seen (and acted on) whatever the server has by now."""
        for h in hosts:
            wait_until(lambda h=h: self.caught_up(h), timeout, what=f"agent {h} caught up")

    def agent(self, host: str) -> dict[str, Any]:
        return next(a for a in self.lab.state["agents"] if a["host"] == host)

    def agent_log(self, host: str) -> str:
        return Path(self.agent(host)["log"]).read_text(errors="replace")

    def start_agents(self, hosts: list[str] | None = None) -> None:
        self.lab.start_agents(self.server.url, self.token, hosts=hosts)

    def restart_agent(self, host: str) -> tuple[int, float]:
        """Stop (SIGTERM) and start one agent; returns the exit code and its new log offset."""
        pid = self.agent(host)["pid"]
        offset = len(self.agent_log(host))
        os.kill(pid, 15)
        code = wait_until(lambda: _exit_code(pid), 10, 0.02, "agent exit")
        self.lab.state["agents"] = [a for a in self.lab.state["agents"] if a["host"] != host]
        self.lab.save()
        self.start_agents([host])
        return code[1], offset

    # -- switch ---------------------------------------------------------------------------------
    def taas_flows(self, host: str, stats: bool = False) -> dict[str, list[str]]:
        """Flows with the taas cookie per bridge; without stats unless asked."""
        out = {}
        for br in ("br-int", "br-tap", "br-tun"):
            args = ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", br, TAAS_COOKIE]
            if not stats:
                args.insert(1, "--no-stats")
            res = self.lab.ovs(host, args, check=False)
            out[br] = sorted(ln.strip() for ln in res.splitlines() if "actions=" in ln)
        return out

    def restart_ovs(self, host: str) -> None:
        """Kill ovsdb-server and ovs-vswitchd of a host and start them again on the same DB,
        as a package upgrade or a crash would; then redo what the host's own configuration
        and the L2 agent would redo (tunnel IP on br-phy, the L2 flows). taas is not helped."""
        h = self.lab.host(host)
        rd = h.run_dir
        pids = [read_pidfile(f"{rd}/{d}.pid") for d in ("ovs-vswitchd", "ovsdb-server")]
        kill_pids([p for p in pids if p])
        start_ovs(h.netns, rd, h.ovsdb)
        subprocess.run(["ovs-vsctl", f"--db={h.ovsdb}", "--timeout=30", "--", "wait-until",
                        "Interface", "br-phy", "ofport>0"], check=True)
        wait_until(lambda: subprocess.run(netns_cmd(h.netns, ["ip", "link", "show", "br-phy"]),
                                          capture_output=True).returncode == 0, 10)
        prefix = self.lab.state["underlay_cidr"].split("/")[1]
        for cmd in (["addr", "replace", f"{h.tunnel_ip}/{prefix}", "dev", "br-phy"],
                    ["link", "set", "br-phy", "mtu", str(UNDERLAY_MTU), "up"]):
            subprocess.run(["ip", "-n", h.netns, *cmd], check=True)
        for br in ("br-int", "br-tun", "br-phy"):
            subprocess.run(["ovs-ofctl", "add-flows", h.mgmt(br), f"{rd}/{br}.l2flows"],
                           check=True)
        self.warm_up()

    def warm_up(self) -> None:
        """Let OVS's userspace tunnels learn the underlay MACs again (as the lab's build does)."""
        for h in self.lab.hosts:
            for o in self.lab.hosts:
                if o.name != h.name:
                    subprocess.run(netns_cmd(h.netns, ["ping", "-c1", "-W1", "-q", o.tunnel_ip]),
                                   capture_output=True)

    def move_vm(self, vm: str, to_host: str) -> None:
        """Live-migrate a VM's port: unplug it from its host's br-int and plug a new veth with
        the same iface-id and MAC into the other host's br-int (what Nova + the L2 agent do)."""
        v = self.lab.vm(vm)
        src, dst = self.lab.host(v.host), self.lab.host(to_host)
        subprocess.run(["ovs-vsctl", f"--db={src.ovsdb}", "del-port", "br-int",
                        v.host_interface], check=True)
        subprocess.run(["ip", "-n", src.netns, "link", "del", v.host_interface], check=True)
        vm_veth(asdict(v), dst.netns)
        tag = dst.local_vlans[v.network_id]
        subprocess.run(["ovs-vsctl", f"--db={dst.ovsdb}", "add-port", "br-int",
                        v.host_interface, f"tag={tag}", "--", "set", "Interface",
                        v.host_interface, f"external_ids:iface-id={v.port_id}",
                        f"external_ids:attached-mac={v.mac}",
                        "external_ids:iface-status=active"], check=True)
        for rec in self.lab.state["vms"]:
            if rec["name"] == vm:
                rec["host"], rec["local_vlan"] = to_host, tag
        self.lab.save()

    # -- traffic --------------------------------------------------------------------------------
    def ping_flood(self, src_vm: str, dst_vm: str, count: int,
                   interval: float = 0.01) -> subprocess.Popen[str]:
        """Background ping; ``finish_ping`` returns (transmitted, received)."""
        return self.lab.popen(src_vm, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                                       "-W", "1", self.lab.vm(dst_vm).ip],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def finish_ping(p: subprocess.Popen[str], timeout: float = 60,
                    interrupt: bool = False) -> tuple[int, int]:
        """Wait for a background ping (or stop it: SIGINT, ping prints its totals)."""
        if interrupt:
            os.killpg(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=timeout)
        m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out or "")
        assert m, out
        return int(m.group(1)), int(m.group(2))

    def mirrored_within(self, src_vm: str, dst_vm: str, timeout: float,
                        monitor: str = "mon") -> float | None:
        """Ping src->dst every 20 ms until the monitor sees a copy; seconds it took, or None."""
        src, dst = self.lab.vm(src_vm).ip, self.lab.vm(dst_vm).ip
        t0 = time.monotonic()
        with self.lab.capture(monitor, bpf="icmp", settle=False) as cap:
            p = self.ping_flood(src_vm, dst_vm, int(timeout / 0.02) + 1, 0.02)
            try:
                got = cap.wait_for(1, timeout, lambda f: icmp(f) == (src, dst, 8))
            finally:
                p.kill()
                p.communicate()
        return time.monotonic() - t0 if got else None


def _exit_code(pid: int) -> tuple[bool, int] | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return (True, 0) if not Path(f"/proc/{pid}").exists() else None
    if done == 0:
        return None
    return True, os.waitstatus_to_exitcode(status)


@contextmanager
def start_system(**config: Any) -> Iterator[System]:
    """taas-server (with server settings `config`) + a 2-host lab + one agent per host, all
    removed at exit."""
    with run_server(**config) as srv:
        lab = Lab.up(None, unique_name("e"), server=srv.url, token=srv.tokens["admin"],
                     agents=False, autoclean=True)
        try:
            sysm = System(srv, lab)
            try:
                sysm.start_agents()  # the agents use the service role, as in production
                for h in ("host1", "host2"):
                    wait_until(lambda h=h: "synced revision" in sysm.agent_log(h), 30,
                               what=f"agent {h} up")
                yield sysm
            finally:
                sysm.api.close()
                sysm.admin.close()
        finally:
            lab.down()


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system() as sysm:
        yield sysm


__all__ = ["System", "count_icmp", "icmp", "record", "start_system", "wait_until"]
