"""What a remote mirror costs production: TCP throughput and underlay bytes (issue 10).

    python -m bench.mirror_bench [--rounds 5] [--seconds 3]

A real taas-server (SQLite) and the default 2-host lab (real OVS, userspace datapath, VXLAN
underlay) with one taas-agent per host. TCP (iperf3) from vm1 (host1) to vm3 (host2); the
tap service's monitor is vm2 on host2, so every copy of vm1's traffic (a BOTH tap flow)
crosses the same underlay as the tenant's stream. Modes, alternated round by round (each
round runs every mode once, in order; medians are reported):

- no mirror: no tap flow;
- mirror: an unlimited tap flow;
- max_kbps 10%: the tap flow with `max_kbps` = 10 % of the no-mirror throughput (measured
  first, by calibration runs); the figure is its throughput relative to no mirror;
- snaplen 128: the tap flow with `snaplen` 128; the figure is its underlay bytes of copies
  relative to the unlimited mirror.

A mode switch goes through the API: the tap flow is created (waited for until ACTIVE: both
hosts' switches have it) or deleted (waited for until gone). Underlay bytes:
- host1 sent: every byte host1's underlay NIC (phy0) sent, tenant stream and copies;
- copies: the copies host1 put into VXLAN, counted exactly (its br-tun copy flows' packets
  minus what the meters on br-tap dropped: OVS credits a rule behind a meter with the packets
  the meter then drops), times the bytes one copy takes on the wire, as host2's br-tun receive
  flow saw them (inner bytes + 50 bytes of outer Ethernet/IPv4/UDP/VXLAN; after truncation);
- all per 100 bytes vm1 sent (its eth0 counters) over the same window.
Flow stats are read once they stop moving (OVS credits them every ~0.5 s). A mode whose
attribute the server refuses (400: an older server) prints "not available".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.e2e_bench import machine, wait
from taas.agent.ovs import tables as T
from taas.agent.ovs.meters import read_meter_stats
from taas.lab import Lab
from taas.lab.pytest_plugin import unique_name
from taas.testing.server import run_server

TF = "/v2.0/taas/tap_flows"
VXLAN_OVERHEAD = 14 + 20 + 8 + 8  # outer Ethernet, IPv4, UDP, VXLAN
SENT = (T.PRIO_TUN, T.PRIO_TUN_TRUNC)  # br-tun of the source host: copies into VXLAN
RECEIVED = (T.PRIO_TUN_IN,)  # br-tun of the monitor's host: copies out of VXLAN
STATS = re.compile(r"priority=(\d+).*n_packets=(\d+), n_bytes=(\d+)|"
                   r"n_packets=(\d+), n_bytes=(\d+).*priority=(\d+)")


@dataclass
class Run:
    mbps: float  # iperf3 receiver throughput
    tenant_bytes: int  # vm1 eth0 tx bytes over the run
    sent_packets: int  # copies host1's br-tun put into VXLAN (what passed the meters)
    copy_packets: int  # copies host2's br-tun took in
    copy_bytes: int  # their bytes on the wire (outer headers included; after truncation)
    underlay_bytes: int  # everything host1 sent on the underlay (tenant stream + copies)
    seconds: float


@dataclass
class Mode:
    name: str
    flow: dict[str, Any] | None  # extra tap flow attributes; None: no tap flow
    runs: list[Run] = field(default_factory=list)
    unavailable: str | None = None


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def copy_counters(lab: Lab, host: str, priorities: tuple[int, ...]) -> tuple[int, int]:
    """(packets, bytes) that taas's br-tun flows of these priorities on `host` matched
    (bytes as matched: before any truncation at their output)."""
    packets = nbytes = 0
    for line in lab.dump_flows(host, "br-tun", f"cookie={T.COOKIE:#x}/-1"):
        if m := STATS.search(line):
            prio, n, b = (m.group(1, 2, 3) if m.group(1) else m.group(6, 4, 5))
            if int(prio) in priorities:
                packets, nbytes = packets + int(n), nbytes + int(b)
    return packets, nbytes


def meter_drops(lab: Lab, host: str) -> int:
    """Copies taas's meters on `host`'s br-tap dropped (tap flow limits sit there). Flow stats
    after a meter count the copies it then drops too: they are translated in one go."""
    stats = read_meter_stats(f"unix:{lab.host(host).run_dir}/br-tap.mgmt")
    return sum(m.dropped_packets for m in stats.values())


def tx_bytes(lab: Lab, target: str, iface: str = "eth0") -> int:
    out = lab.exec(target, ["ip", "-s", "-j", "link", "show", iface]).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def iperf(lab: Lab, src: str, dst: str, seconds: float, port: int) -> float:
    """Mbit/s the receiver counted (iperf3, the first second of slow start omitted)."""
    ip = lab.vm(dst).ip
    server = lab.popen(dst, ["iperf3", "-s", "-1", "-B", ip, "-p", str(port), "--forceflush"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "Server listening" in line:
                break
        else:
            raise RuntimeError("iperf3 server did not start")
        out = lab.exec(src, ["iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-O", "1",
                             "-J"], timeout=seconds + 30).stdout
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


class Bench:
    def __init__(self, lab: Lab, api: httpx.Client, service_id: str, seconds: float) -> None:
        self.lab, self.api, self.service_id, self.seconds = lab, api, service_id, seconds
        self.src, self.dst, self.mon = lab.vm("vm1"), lab.vm("vm3"), lab.vm("vm2")
        self.flow_id: str | None = None
        self.port = 5400

    def set_flow(self, attrs: dict[str, Any] | None) -> str | None:
        """Make the tap flow `attrs` (None: none) the live one; an error text if refused."""
        if self.flow_id is not None:
            fid, self.flow_id = self.flow_id, None
            assert self.api.delete(f"{TF}/{fid}").status_code == 204
            if not wait(lambda: self.api.get(f"{TF}/{fid}").status_code == 404, 30, 0.05):
                raise RuntimeError(f"tap flow {fid} was not removed from the switches")
        if attrs is None:
            return None
        r = self.api.post(TF, json={"tap_flow": {
            "tap_service_id": self.service_id, "source_port": self.src.port_id,
            "direction": "BOTH", **attrs}})
        if r.status_code == 400:
            return r.json()["NeutronError"]["message"]
        assert r.status_code == 201, r.text
        self.flow_id = r.json()["tap_flow"]["id"]
        if not wait(lambda: self.api.get(f"{TF}/{self.flow_id}").json()["tap_flow"]["status"]
                    == "ACTIVE", 30, 0.05):
            raise RuntimeError(f"tap flow {attrs} did not become ACTIVE")
        return None

    def counters(self) -> tuple[int, int, int]:
        """(copies host1 sent, copies host2 took in, their bytes on the wire)."""
        sent, _ = copy_counters(self.lab, self.src.host, SENT)
        packets, nbytes = copy_counters(self.lab, self.mon.host, RECEIVED)
        return sent - meter_drops(self.lab, self.src.host), packets, nbytes

    def settled_counters(self) -> tuple[int, int, int]:
        """Counters once they stop moving: OVS credits flow stats to the OpenFlow rules
        only when its revalidators run (every ~0.5 s), so they lag the packets."""
        last = self.counters()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.6)
            now = self.counters()
            if now == last:
                break
            last = now
        return last

    def run(self) -> Run:
        self.port += 1
        s0, p0, b0 = self.settled_counters()
        t0, tx0 = time.monotonic(), tx_bytes(self.lab, "vm1")
        u0 = tx_bytes(self.lab, self.src.host, "phy0")
        mbps = iperf(self.lab, "vm1", "vm3", self.seconds, self.port)
        secs, tx1 = time.monotonic() - t0, tx_bytes(self.lab, "vm1")
        u1 = tx_bytes(self.lab, self.src.host, "phy0")
        s1, p1, b1 = self.settled_counters()
        return Run(mbps, tx1 - tx0, s1 - s0, p1 - p0, (b1 - b0) + VXLAN_OVERHEAD * (p1 - p0),
                   u1 - u0, secs)


def _med(runs: list[Run], fn: Callable[[Run], float]) -> float:
    return statistics.median(fn(r) for r in runs)


def _med(runs: list[Run], fn: Callable[[Run], float]) -> float:
    return statistics.median(fn(r) for r in runs)


def per_copy(r: Run) -> float:
    """Bytes one copy takes on the underlay (outer headers included), as host2 got them."""
    return r.copy_bytes / max(1, r.copy_packets)


def copies_sent(r: Run) -> float:
    """Bytes of copies host1 put on the underlay: copies sent (exact) x bytes per copy."""
    return r.sent_packets * per_copy(r)


def report(modes: list[Mode], base_mbps: float, max_kbps: int) -> None:
    ref = {m.name: m for m in modes}
    none_mbps = _med(ref["no mirror"].runs, lambda r: r.mbps)
    shown = [m for m in modes if m.runs and not m.unavailable]
    print(f"\nTCP vm1 (host1) -> vm3 (host2), iperf3; a BOTH tap flow on vm1 into a tap "
          f"service on vm2 (host2); calibration (3 runs, no mirror) {base_mbps:.0f} Mbit/s -> "
          f"max_kbps {max_kbps} = {max_kbps / 10 / none_mbps:.1f} % of the no-mirror median "
          "of the rounds")
    print(f"{'mode':<14}{'runs':>5}{'Mbit/s p50':>11}{'min':>7}{'max':>7}{'vs none':>9}"
          f"{'copies kbit/s':>15}")
    for m in modes:
        if m not in shown:
            print(f"{m.name:<14} not available ({m.unavailable or 'no runs'})")
            continue
        mbps = [r.mbps for r in m.runs]
        kbps = _med(m.runs, lambda r: copies_sent(r) * 8 / 1000 / r.seconds)
        print(f"{m.name:<14}{len(mbps):>5}{statistics.median(mbps):>11.0f}{min(mbps):>7.0f}"
              f"{max(mbps):>7.0f}{statistics.median(mbps) / none_mbps:>9.3f}{kbps:>15.0f}")
    mirror = ref["mirror"].runs
    print(f"\nunderlay bytes per 100 bytes vm1 sent (medians)\n{'mode':<14}{'host1 sent':>11}"
          f"{'copies':>8}{'B/copy':>8}{'lost':>7}{'copies vs mirror':>18}{'B/copy vs mirror':>18}")
    for m in shown:
        host1 = _med(m.runs, lambda r: r.underlay_bytes / max(1, r.tenant_bytes))
        copies = _med(m.runs, lambda r: copies_sent(r) / max(1, r.tenant_bytes))
        lost = _med(m.runs, lambda r: 1 - r.copy_packets / max(1, r.sent_packets))
        vs = vs_b = "-"
        if mirror and m.flow is not None:
            vs = f"{copies / _med(mirror, lambda r: copies_sent(r) / max(1, r.tenant_bytes)):.3f}"
            vs_b = f"{_med(m.runs, per_copy) / _med(mirror, per_copy):.3f}"
        print(f"{m.name:<14}{host1 * 100:>11.1f}{copies * 100:>8.1f}"
              f"{_med(m.runs, per_copy) if m.flow is not None else 0:>8.0f}"
              f"{lost * 100 if m.flow is not None else 0:>6.1f}%{vs:>18}{vs_b:>18}")
    print("host1 sent: all bytes host1 put on the underlay (tenant stream and copies); "
          "copies: the copies host1's br-tun sent (flow stats minus meter drops, exact) x "
          "B/copy; B/copy: bytes on the wire per copy as host2's br-tun took them in (outer "
          "headers included); lost: copies sent that host2's br-tun never took in (a busy "
          "userspace datapath drops on receive); copies kbit/s: sent, outer headers included "
          "(a meter counts the inner frame, before truncation)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every mode (default 5)")
    ap.add_argument("--seconds", type=float, default=3.0, help="iperf3 seconds per run")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    print(f"machine: {machine()}", flush=True)
    load_before = load()
    with run_server() as srv:
        lab = Lab.up(None, unique_name("bm"), server=srv.url, token=srv.tokens["admin"],
                     agents=False, autoclean=True)
        try:
            lab.start_agents(srv.url, srv.tokens["service"])
            api = srv.client("a-member")
            r = api.post("/v2.0/taas/tap_services", json={"tap_service": {
                "name": "bench", "port_id": lab.vm("vm2").port_id}})
            assert r.status_code == 201, r.text
            sid = r.json()["tap_service"]["id"]
            if not wait(lambda: api.get(f"/v2.0/taas/tap_services/{sid}").json()
                        ["tap_service"]["status"] == "ACTIVE", 30, 0.05):
                raise RuntimeError("tap service did not become ACTIVE")
            bench = Bench(lab, api, sid, args.seconds)
            lab.ping("vm1", "vm3", count=2)
            base = statistics.median(bench.run().mbps for _ in range(3))
            max_kbps = max(1, int(base * 1000 * 0.10))
            modes = [Mode("no mirror", None), Mode("mirror", {}),
                     Mode("max_kbps 10%", {"max_kbps": max_kbps}),
                     Mode("snaplen 128", {"snaplen": 128})]
            measure(bench, modes, args.rounds)
            bench.set_flow(None)
            report(modes, base, max_kbps)
        finally:
            lab.down()
    print(f"load average before {load_before}, after {load()}")
    return 0


def measure(bench: Bench, modes: list[Mode], rounds: int) -> None:
    for i in range(rounds):
        for m in modes:
            if m.unavailable:
                continue
            error = bench.set_flow(m.flow)
            if error:
                m.unavailable = f"the server refused it: {error}"
                continue
            m.runs.append(bench.run())
        print(f"round {i + 1}/{rounds}: " + ", ".join(
            f"{m.name} {m.runs[-1].mbps:.0f}" for m in modes if m.runs and not m.unavailable)
            + " Mbit/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
