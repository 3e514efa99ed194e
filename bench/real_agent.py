"""One real taas-agent's idle cost: what every hypervisor pays for taas.

A one-host lab (its own ovsdb-server and ovs-vswitchd, userspace datapath, in a network
namespace; taas/lab) with three VMs and a collector, registered in the bench's taas-server;
one real `taas-agent` for it (service role). It gets state to hold: a tap service, two tap
flows and a tap mirror. Once the server shows them all ACTIVE (the agent converged), the
agent idles for a measured window: its CPU share (utime+stime of /proc/<pid>/stat, and of the
ovs-ofctl/ovs-vsctl children it ran and reaped), its RSS, and the same for the host's
ovs-vswitchd and ovsdb-server. Everything is removed at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

TAAS = "/v2.0/taas"


def unavailable() -> str | None:
    """Why a real agent cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ip")
               if shutil.which(t) is None]
    return f"needs {', '.join(missing)}" if missing else None


def _ticks(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's) of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz, (int(fields[13]) + int(fields[14])) / hz


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pidfile(path: str) -> int:
    return int(Path(path).read_text().strip())


def _spec() -> dict[str, Any]:
    return {"hosts": ["h1"],
            "networks": [{"name": "net", "project_id": "project-a", "vni": 100,
                          "cidr": "10.10.1.0/24"}],
            "vms": [{"name": n, "network": "net", "host": "h1"} for n in ("mon", "vm1", "vm2")],
            "collectors": [{"name": "col1"}]}


def measure(url: str, tokens: dict[str, str], window: float) -> dict[str, str]:
    """Build the lab, start the agent, give it state, wait for convergence, measure."""
    from taas.lab import Lab

    out: dict[str, str] = {}
    lab = Lab.up(_spec(), f"scl{secrets.token_hex(3)}", server=url, token=tokens["admin"],
                 agents=False, autoclean=True)
    try:
        (agent,) = lab.start_agents(url, tokens["service"])
        pid = int(agent["pid"])
        host = lab.host("h1")
        member = {"X-Auth-Token": tokens["member"]}
        with httpx.Client(base_url=url, headers=member, timeout=30) as api:
            def post(kind: str, body: dict[str, Any]) -> str:
                r = api.post(f"{TAAS}/{kind}s", json={kind: body})
                r.raise_for_status()
                return str(r.json()[kind]["id"])

            svc = post("tap_service", {"port_id": lab.vm("mon").port_id})
            made = [("tap_service", svc)]
            for vm in ("vm1", "vm2"):
                made.append(("tap_flow", post("tap_flow", {
                    "tap_service_id": svc, "source_port": lab.vm(vm).port_id,
                    "direction": "BOTH"})))
            made.append(("tap_mirror", post("tap_mirror", {
                "port_id": lab.vm("vm2").port_id, "remote_ip": lab.collector("col1").ip,
                "mirror_type": "gre", "directions": {"IN": 4000 + secrets.randbelow(50000)}})))
            t0 = time.monotonic()
            while True:
                statuses = [api.get(f"{TAAS}/{k}s/{i}").json()[k]["status"] for k, i in made]
                if all(s == "ACTIVE" for s in statuses):
                    break
                if time.monotonic() - t0 > 120:
                    raise RuntimeError(f"the agent did not converge: {statuses}")
                time.sleep(0.5)
        out["converged (tap service, 2 flows, mirror ACTIVE)"] = \
            f"{time.monotonic() - t0:.1f} s after the creates"
        time.sleep(5)  # the report and its last heartbeat settle
        procs = {"taas-agent": pid,
                 "ovs-vswitchd": _pidfile(f"{host.run_dir}/ovs-vswitchd.pid"),
                 "ovsdb-server": _pidfile(f"{host.run_dir}/ovsdb-server.pid")}
        before = {name: _ticks(p) for name, p in procs.items()}
        start = time.monotonic()
        time.sleep(window)
        span = time.monotonic() - start
        after = {name: _ticks(p) for name, p in procs.items()}
        own = (after["taas-agent"][0] - before["taas-agent"][0]) / span
        kids = (after["taas-agent"][1] - before["taas-agent"][1]) / span
        out[f"taas-agent idle CPU over {span:.0f} s (own + its ovs-* children)"] = \
            f"{own * 100:.2f} % + {kids * 100:.2f} % of one core"
        out["taas-agent RSS"] = f"{_rss_mb(pid):.0f} MB"
        for name in ("ovs-vswitchd", "ovsdb-server"):
            cpu = (after[name][0] - before[name][0]) / span
            out[f"{name} of that host: idle CPU, RSS"] = \
                f"{cpu * 100:.2f} %, {_rss_mb(procs[name]):.0f} MB"
    finally:
        lab.down()
    return out
