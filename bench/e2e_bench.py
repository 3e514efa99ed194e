"""End-to-end latency: from the API call that creates a tap flow to the switch and the wire.

    python -m bench.e2e_bench [--runs 20] [--interval 0.005]

A real taas-server (SQLite) and a 2-host lab with one taas-agent per host. A tap service on
`mon` (host1). The sources ping continuously (`ping -i <interval>`): vm1 -> vm3 (vm1 on host1:
the *local* case) and vm2 -> vm3 (vm2 on host2: the *remote* case, copies cross VXLAN), and
tcpdump records at `mon` with kernel timestamps. Each run:

1. t0 = wall clock; POST /v2.0/taas/tap_flows (source vm1 or vm2, direction OUT);
2. "flows on switch": the source host's agent logs `synced revision N ... +a -r flows` right
   after its OpenFlow bundle was applied: that log line's time - t0;
   ("desired state at agent": that line's time minus its "Y ms after receipt": the server's
   commit and the long-poll answer, without the driver);
3. "first mirrored packet": the pcap timestamp of the first copy of a source's request that
   arrived at mon after t0 - t0 (includes up to one ping interval of waiting for traffic);
4. DELETE the tap flow and wait until the agent removed its flows, so that runs are independent.

Prints the machine, then p50/p90/p99/max per case.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from taas.lab import Lab
from taas.lab.pytest_plugin import unique_name
from taas.testing.server import run_server

SYNC_LINE = re.compile(r"^(\S+) INFO \[converge\] taas\.agent\.agent: synced revision (\d+) "
                       r"in ([\d.]+) ms, \+(\d+) -(\d+) flows \(([^,)]*)(?:, ([\d.]+) ms after "
                       r"receipt)?")


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True,
                         text=True).stdout.splitlines()
    load = os.getloadavg()
    return (f"{platform.node()}: {platform.system()} {platform.release()}, {cpu}, "
            f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
            f"Python {platform.python_version()}; {ovs[0] if ovs else 'ovs ?'} "
            "(userspace datapath)")


def pcap_records(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of every complete record of a pcap file that may still be growing."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian, frac = {0xA1B2C3D4: ("<", 1e-6), 0xA1B23C4D: ("<", 1e-9),
                    0xD4C3B2A1: (">", 1e-6), 0x4D3CB2A1: (">", 1e-9)}[magic]
    out, off = [], 24
    while off + 16 <= len(data):
        sec, sub, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        if off + 16 + incl > len(data):
            break
        out.append((sec + sub * frac, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def is_request(frame: bytes, src: str, dst: str) -> bool:
    if len(frame) < 35 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return False
    ihl = (frame[14] & 0x0F) * 4
    return (frame[26:30] == bytes(map(int, src.split("."))) and
            frame[30:34] == bytes(map(int, dst.split("."))) and frame[14 + ihl] == 8)


def sync_lines(log: Path, offset: int) -> list[tuple[float, int, float, int, int, float]]:
    """(wall time, revision, sync ms, added, removed, ms since the state's receipt) of the
    agent's sync lines after ``offset``."""
    out = []
    with open(log, errors="replace") as fh:
        fh.seek(offset)
        for line in fh:
            m = SYNC_LINE.match(line)
            if m:
                ts = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
                out.append((ts, int(m.group(2)), float(m.group(3)), int(m.group(4)),
                            int(m.group(5)), float(m.group(7) or "nan")))
    return out


def wait(cond: Any, timeout: float, interval: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    return None


def stop_all(procs: list[subprocess.Popen[Any]]) -> None:
    """Stop background traffic (each started in its own process group) and reap it."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        p.wait()
    procs.clear()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per case (default 20)")
    ap.add_argument("--interval", type=float, default=0.01,
                    help="ping interval of the sources in seconds (default 0.01)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    print(f"machine: {machine()}", flush=True)
    with run_server() as srv:
        lab = Lab.up(None, unique_name("b"), server=srv.url, token=srv.tokens["admin"],
                     agents=False, autoclean=True)
        pings: list[subprocess.Popen[bytes]] = []
        try:
            lab.start_agents(srv.url, srv.tokens["service"])
            logs = {a["host"]: Path(a["log"]) for a in lab.state["agents"]}
            for h, log in logs.items():
                if not wait(lambda log=log: log.exists() and "synced revision" in
                            log.read_text(errors="replace"), 30, 0.05):
                    raise RuntimeError(f"agent {h} did not start")
            api = srv.client("a-member")
            vm = {v.name: v for v in lab.vms}
            r = api.post("/v2.0/taas/tap_services",
                         json={"tap_service": {"name": "bench", "port_id": vm["mon"].port_id}})
            ts_id = r.json()["tap_service"]["id"]
            wait(lambda: api.get(f"/v2.0/taas/tap_services/{ts_id}").json()["tap_service"]
                 ["status"] == "ACTIVE", 20, 0.05)
            cases = {"local": ("vm1", "host1"), "remote": ("vm2", "host2")}
            for src, _ in cases.values():
                pings.append(lab.popen(src, ["ping", "-q", "-n", "-i", str(args.interval),
                                             vm["vm3"].ip], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL))
            results: dict[str, dict[str, list[float]]] = {
                c: {"api": [], "receipt": [], "switch": [], "packet": [], "sync_ms": []}
                for c in cases}
            with lab.capture("mon", bpf="icmp", settle=False) as cap:
                time.sleep(0.3)
                for i in range(args.runs):
                    for case, (src, host) in cases.items():
                        sample = one_run(api, cap.path, logs[host], vm[src].ip, vm["vm3"].ip,
                                         vm[src].port_id, ts_id)
                        if sample is None:
                            print(f"run {i} {case}: no mirrored packet", flush=True)
                            continue
                        for k, v in sample.items():
                            results[case][k].append(v)
            print(f"\n{args.runs} runs per case; sources ping every {args.interval * 1000:g} ms")
            print(f"{'case':<8}{'measure':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
            labels = {"api": "POST tap_flow answered",
                      "receipt": "API call -> desired state at agent",
                      "switch": "API call -> flows on the switch",
                      "packet": "API call -> first mirrored packet",
                      "sync_ms": "agent sync (dump+diff+bundle)"}
            for case, res in results.items():
                for k, label in labels.items():
                    vals = [v * 1000 for v in res[k]] if k != "sync_ms" else res[k]
                    if not vals:
                        continue
                    print(f"{case:<8}{label:<34}{pct(vals, 50):9.1f}{pct(vals, 90):9.1f}"
                          f"{pct(vals, 99):9.1f}{max(vals):9.1f}"
                          f"  (ms, n={len(vals)}, mean {statistics.mean(vals):.1f})")
        finally:
            stop_all(pings)
            lab.down()
    return 0


def one_run(api: Any, pcap: Path, log: Path, src_ip: str, dst_ip: str, port_id: str,
            ts_id: str) -> dict[str, float] | None:
    offset = log.stat().st_size
    seen = len(pcap_records(pcap))
    t0 = time.time()
    r = api.post("/v2.0/taas/tap_flows", json={"tap_flow": {
        "source_port": port_id, "tap_service_id": ts_id, "direction": "OUT"}})
    t_api = time.time()
    assert r.status_code == 201, r.text
    tf_id = r.json()["tap_flow"]["id"]
    first = wait(lambda: next((t for t, f in pcap_records(pcap)[seen:]
                               if t >= t0 and is_request(f, src_ip, dst_ip)), None), 5)
    synced = wait(lambda: next((s for s in sync_lines(log, offset) if s[3] > 0), None), 5, 0.01)
    # Delete, and wait until the source host removed the flows before the next run.
    offset = log.stat().st_size
    api.delete(f"/v2.0/taas/tap_flows/{tf_id}")
    wait(lambda: any(s[4] > 0 for s in sync_lines(log, offset)), 5, 0.01)
    wait(lambda: api.get(f"/v2.0/taas/tap_flows/{tf_id}").status_code == 404, 5, 0.01)
    time.sleep(0.05)
    if first is None or synced is None:
        return None
    return {"api": t_api - t0, "receipt": synced[0] - synced[5] / 1000 - t0,
            "switch": synced[0] - t0, "packet": first - t0, "sync_ms": synced[2]}


if __name__ == "__main__":
    sys.exit(main())
