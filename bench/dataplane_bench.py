"""Data-plane benchmark of the OVS driver on a real lab.

    python -m bench.dataplane_bench [--quick] [--rounds N] [--mbytes M] [--incremental-only]
                                    [--changes K]

0. Incremental change latency: p50/p99 of OvsDriver.sync() for adding one tap flow (a new
   source port, OUT) to a host holding N tap flows, N = 10 and 1,000, and of the sync that
   removes it again; K changes each (default 40). Two cases: the tap service's monitor on the
   same host (br-int changes), and on the other host (first use of that remote service: br-int,
   br-tap and br-tun change). --incremental-only runs just this part.
1. Full resync: OvsDriver.sync() of N tap flows on one host from an empty switch, then a no-op
   sync (nothing changed; the driver reads the flow count and, as it matches, skips the dump),
   the same with a full dump of the switch's taas flows, and a 1% change (1% of the tap flows
   deleted), for N = 100, 1,000, 10,000 (--quick: 100, 1,000).
   The tap flows use synthetic source ports: OpenFlow accepts in_port numbers of ports that do
   not exist, so the flows are real flows on a real switch; only the frames are missing.
   Directions cycle OUT/IN/BOTH, ports spread over 100 networks, 100 tap services.
2. TCP throughput vm1 (host1) -> vm3 (host2) without mirroring, with taas mirroring vm1's
   egress to the monitor VM (same host), and with an OVS native Mirror doing the same copy
   (select_src_port=vm1, output_port=mon; `ovs-appctl revalidator/purge` after creating it),
   interleaved round by round; medians and ratios. The receiver measures from first byte to
   EOF. Plus, from interface counters, the copies the monitor got per frame vm1 sent and per
   frame vm3 received (at saturation the userspace datapath drops some of vm1's frames on
   ingress, original and copy alike, and TCP retransmits them), and a paced ping (1,000
   packets/s) below saturation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace

from taas.agent.ovs.compile import compile_host
from taas.agent.ovs.driver import LocalPort, OvsDriver
from taas.common.desired_state import DesiredState, PortFacts, TapFlowState, TapServiceState
from taas.lab import Lab
from taas.lab.pytest_plugin import unique_name

_RECEIVER = """
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port)); srv.listen(1); srv.settimeout(30)
print("ready", flush=True)
c, _ = srv.accept(); c.settimeout(30)
n, t0 = 0, None
while True:
    b = c.recv(262144)
    if t0 is None:
        t0 = time.monotonic()
    if not b:
        break
    n += len(b)
print(n, time.monotonic() - t0, flush=True)
"""

_SENDER = """
import socket, sys
ip, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((ip, port), timeout=30)
buf = b"x" * 65536
sent = 0
while sent < total:
    sent += s.send(buf[: min(len(buf), total - sent)])
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
"""


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True
                         ).stdout.splitlines()[0]
    return (f"machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}, {ovs}, "
            f"Python {platform.python_version()}")


def synthetic(lab: Lab, n: int) -> tuple[DesiredState, dict[str, LocalPort]]:
    """n tap flows of synthetic ports on host1, 100 networks, 100 services to the monitor VM."""
    mon = lab.vm("mon")
    h1 = lab.host("host1")
    ports: dict[str, LocalPort] = {mon.port_id: LocalPort(mon.port_id, mon.ofport,
                                                          mon.local_vlan, mon.mac, "mon")}
    facts = {mon.port_id: PortFacts(mon.port_id, mon.network_id, mon.mac, 100, "host1")}
    services = tuple(TapServiceState(f"s{i}", "p", mon.port_id, 3900 + i, 16_003_900 + i,
                                     "host1", h1.tunnel_ip) for i in range(100))
    flows = []
    for i in range(n):
        pid = f"p{i}"
        mac = f"fa:16:3f:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        ports[pid] = LocalPort(pid, 1000 + i, 100 + i % 100, mac, f"syn{i}")
        facts[pid] = PortFacts(pid, f"net{i % 100}", mac, 1000 + i % 100, "host1")
        flows.append(TapFlowState(f"f{i}", "p", f"s{i % 100}", pid, ("OUT", "IN", "BOTH")[i % 3],
                                  None))
    return DesiredState("host1", 1, services, tuple(flows), (), facts), ports


def _pct(vals: list[float], q: float) -> float:
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]


def bench_incremental(lab: Lab, sizes: list[int], changes: int) -> None:
    h = lab.host("host1")
    vm3 = lab.vm("vm3")
    h2 = lab.host(vm3.host)
    drv = OvsDriver(h.ovsdb, h.run_dir, "host1", h.tunnel_ip)
    drv.setup()
    empty = DesiredState("host1", 0)
    print(f"\nincremental change latency: sync() adding / removing one tap flow (new source "
          f"port, OUT) on a host holding N tap flows; ms over {changes} changes")
    print(f"{'N':>6} {'monitor':>8} {'add p50':>8} {'add p99':>8} {'del p50':>8} {'del p99':>8}"
          f" {'flows +/-':>10}")
    remote = TapServiceState("s-remote", "p", vm3.port_id, 3899, 16_003_899, h2.name,
                             h2.tunnel_ip)
    for n in sizes:
        drv.sync(empty, {})
        state, ports = synthetic(lab, n)
        state = replace(state, tap_services=state.tap_services + (remote,),
                        ports={**state.ports, vm3.port_id: PortFacts(
                            vm3.port_id, vm3.network_id, vm3.mac, 100, h2.name)})
        drv.sync(state, ports)
        assert drv.sync(state, ports).added == 0
        for where, sid in (("local", "s0"), ("remote", "s-remote")):
            adds: list[float] = []
            dels: list[float] = []
            touched = 0
            for k in range(changes):
                pid = f"new{k}"
                mac = f"fa:16:3e:ff:{k >> 8 & 255:02x}:{k & 255:02x}"
                port = LocalPort(pid, 60000 + k, 100, mac, f"new{k}")
                grown = replace(
                    state, revision=state.revision + 1,
                    tap_flows=state.tap_flows + (TapFlowState(f"fn{k}", "p", sid, pid, "OUT",
                                                              None),),
                    ports={**state.ports, pid: PortFacts(pid, "net0", mac, 1000, "host1")})
                t0 = time.monotonic()
                res = drv.sync(grown, {**ports, pid: port})
                adds.append((time.monotonic() - t0) * 1000)
                assert res.added > 0 and res.removed == 0, res
                touched = res.added
                t0 = time.monotonic()
                res = drv.sync(state, ports)
                dels.append((time.monotonic() - t0) * 1000)
                assert res.removed == touched and res.added == 0, res
            print(f"{n:>6,} {where:>8} {_pct(adds, 0.5):>8.1f} {_pct(adds, 0.99):>8.1f}"
                  f" {_pct(dels, 0.5):>8.1f} {_pct(dels, 0.99):>8.1f} {touched:>10}")
    drv.sync(empty, {})
    drv.close()


def bench_resync(lab: Lab, sizes: list[int]) -> None:
    h = lab.host("host1")
    drv = OvsDriver(h.ovsdb, h.run_dir, "host1", h.tunnel_ip)
    drv.setup()
    empty = DesiredState("host1", 0)
    print("\nfull resync on one host (synthetic source ports; wall-clock seconds)")
    print(f"{'tap flows':>10} {'flows':>7} {'per tap flow':>12} {'compile':>8} {'full sync':>10}"
          f" {'no-op sync':>10} {'(w/ dump)':>10} {'1% change':>10} {'changed':>8}")
    for n in sizes:
        drv.sync(empty, {})
        state, ports = synthetic(lab, n)
        t0 = time.monotonic()
        compiled = compile_host(state, ports, drv._facts()[0], "host1")
        t_compile = time.monotonic() - t0
        nflows = sum(len(v) for v in compiled.flows.values())
        t0 = time.monotonic()
        full = drv.sync(state, ports)
        t_full = time.monotonic() - t0
        t0 = time.monotonic()
        noop = drv.sync(state, ports)
        t_noop = time.monotonic() - t0
        assert (noop.added, noop.removed) == (0, 0), noop
        drv._applied.clear()  # the same, reading every flow back from the switch
        t0 = time.monotonic()
        noop = drv.sync(state, ports)
        t_noop_dump = time.monotonic() - t0
        assert (noop.added, noop.removed) == (0, 0), noop
        changed = replace(state, tap_flows=state.tap_flows[: n - max(1, n // 100)])
        t0 = time.monotonic()
        small = drv.sync(changed, ports)
        t_small = time.monotonic() - t0
        assert full.added >= nflows - 10
        print(f"{n:>10,} {nflows:>7,} {nflows / n:>12.2f} {t_compile:>8.3f} {t_full:>10.3f}"
              f" {t_noop:>10.3f} {t_noop_dump:>10.3f} {t_small:>10.3f}"
              f" {small.added + small.removed:>8,}")
    drv.sync(empty, {})
    drv.close()


def _counter(lab: Lab, vm: str, key: str) -> int:
    out = lab.exec(vm, ["ip", "-s", "-j", "link", "show", "eth0"]).stdout
    st = json.loads(out)[0]["stats64"]
    return int(st[key]["packets"])


def _transfer(lab: Lab, src: str, dst: str, nbytes: int, port: int) -> float:
    ip = lab.vm(dst).ip
    rx = lab.popen(dst, [sys.executable, "-c", _RECEIVER, ip, str(port)],
                   stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout is not None
        if rx.stdout.readline().strip() != "ready":
            raise RuntimeError("receiver did not start")
        lab.exec(src, [sys.executable, "-c", _SENDER, ip, str(port), str(nbytes)], timeout=60)
        n, secs = rx.stdout.readline().split()
        rx.wait(timeout=10)
        if int(n) != nbytes:
            raise RuntimeError(f"received {n} of {nbytes} bytes")
        return int(n) * 8 / float(secs) / 1e6
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mbytes", type=int, default=200)
    ap.add_argument("--changes", type=int, default=40)
    ap.add_argument("--incremental-only", action="store_true")
    args = ap.parse_args()
    print(machine())
    lab = Lab.up(None, unique_name("bdp"), autoclean=True)
    try:
        bench_incremental(lab, [10, 1000], args.changes)
        if args.incremental_only:
            return
        bench_resync(lab, [100, 1000] if args.quick else [100, 1000, 10_000])
        throughput(lab, 3 if args.quick else args.rounds, 50 if args.quick else args.mbytes)
    finally:
        lab.down()


def throughput(lab: Lab, rounds: int, mbytes: int) -> None:
    src, dst, mon = lab.vm("vm1"), lab.vm("vm3"), lab.vm("mon")
    h1 = lab.host("host1")
    drv = OvsDriver(h1.ovsdb, h1.run_dir, "host1", h1.tunnel_ip)
    drv.setup()
    ports = {v.port_id: LocalPort(v.port_id, v.ofport, v.local_vlan, v.mac, v.host_interface)
             for v in lab.vms_on("host1")}
    facts = {v.port_id: PortFacts(v.port_id, v.network_id, v.mac, 100, v.host) for v in lab.vms}
    mirrored = DesiredState(
        "host1", 1, (TapServiceState("s1", "p", mon.port_id, 3901, 16_003_901, "host1",
                                     h1.tunnel_ip),),
        (TapFlowState("f1", "p", "s1", src.port_id, "OUT", None),), (), facts)
    empty = DesiredState("host1", 2, (), (), (), facts)

    def native(on: bool) -> None:
        if on:
            lab.ovs("host1", ["ovs-vsctl", "--", "--id=@s", "get", "Port", src.host_interface,
                              "--", "--id=@o", "get", "Port", mon.host_interface,
                              "--", "--id=@m", "create", "Mirror", "name=bench",
                              "select_src_port=@s", "output_port=@o",
                              "--", "set", "Bridge", "br-int", "mirrors=@m"])
        else:
            lab.ovs("host1", ["ovs-vsctl", "clear", "Bridge", "br-int", "mirrors"])
        # A Mirror change does not reach already cached datapath flows without this.
        lab.ovs("host1", ["ovs-appctl", "revalidator/purge"])

    modes = {
        "no mirroring": lambda: (drv.sync(empty, ports), native(False)),
        "taas": lambda: (native(False), drv.sync(mirrored, ports)),
        "OVS Mirror": lambda: (drv.sync(empty, ports), native(True)),
    }
    lab.ping("vm1", "vm3", count=2)
    nbytes = mbytes * 1_000_000
    results: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    delivered_ratios: dict[str, list[float]] = {m: [] for m in modes}
    port = 5301
    for _ in range(rounds):
        for mode, enable in modes.items():
            enable()
            c0 = [_counter(lab, v, d) for v, d in (("vm1", "tx"), ("vm3", "rx"), ("mon", "rx"))]
            port += 1
            results[mode].append(_transfer(lab, "vm1", "vm3", nbytes, port))
            c1 = [_counter(lab, v, d) for v, d in (("vm1", "tx"), ("vm3", "rx"), ("mon", "rx"))]
            sent, delivered, copies = (b - a for a, b in zip(c0, c1, strict=True))
            ratios[mode].append(copies / max(1, sent))
            delivered_ratios[mode].append(copies / max(1, delivered))
    base = statistics.median(results["no mirroring"])
    print(f"\nTCP throughput vm1 (host1) -> vm3 (host2), {mbytes} MB per run, {rounds} rounds "
          "interleaved; copies of vm1's egress to mon (host1)")
    print(f"{'mode':>14} {'median Mbit/s':>14} {'min':>8} {'max':>8} {'vs none':>8}"
          f" {'mon rx / vm1 tx':>16} {'mon rx / vm3 rx':>16}")
    for mode, vals in results.items():
        med = statistics.median(vals)
        print(f"{mode:>14} {med:>14.0f} {min(vals):>8.0f} {max(vals):>8.0f} {med / base:>8.2f}"
              f" {statistics.median(ratios[mode]):>16.4f}"
              f" {statistics.median(delivered_ratios[mode]):>16.4f}")
    taas_med = statistics.median(results["taas"])
    native_med = statistics.median(results["OVS Mirror"])
    print(f"taas / OVS Mirror throughput: {taas_med / native_med:.3f}")

    # Below saturation: a paced ping, every request must be copied exactly once.
    drv.sync(mirrored, ports)
    native(False)
    n = 1000
    tx0, rx0 = _counter(lab, "vm1", "tx"), _counter(lab, "mon", "rx")
    lab.exec("vm1", ["ping", "-q", "-i", "0.001", "-c", str(n), "-s", "1000", dst.ip],
             check=False, timeout=60)
    time.sleep(0.2)
    tx1, rx1 = _counter(lab, "vm1", "tx"), _counter(lab, "mon", "rx")
    print(f"paced ping 1,000/s: vm1 sent {tx1 - tx0} frames, mon got {rx1 - rx0} copies "
          f"(ratio {(rx1 - rx0) / max(1, tx1 - tx0):.4f})")
    drv.sync(empty, ports)
    drv.close()


if __name__ == "__main__":
    main()
