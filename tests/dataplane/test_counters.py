"""Counters on real OVS: what the driver reads from the flows that count equals the packets
captured at the monitor (tap flows, tap services, tap mirrors) and, for a filtered tap flow,
the frames its filter skipped. The server's accumulation is tested in
tests/server/test_counters.py; agent restarts through the server in tests/e2e."""

from __future__ import annotations

from collections import Counter

import pytest
from taasdp import Taas, observe

from taas.agent.ovs.counters import CounterReader
from taas.common.desired_state import FilterRule, TapFilterState
from taas.lab import Lab
from taas.testing.wait import wait_until

pytestmark = pytest.mark.ovs


def totals(taas: Taas, reader: CounterReader) -> Counter[tuple[str, str, str]]:
    """(kind, id, counter[:direction]) -> packets, summed over every host's slots."""
    out: Counter[tuple[str, str, str]] = Counter()
    for d in taas.drivers.values():
        for s in d.counter_slots(reader):
            name = s.counter + (f":{s.direction}" if s.direction else "")
            out[(s.kind, s.id, name)] += s.packets
            out[(s.kind, s.id, name + "_bytes")] += s.bytes
    return out


def learn(lab: Lab, *vms: str) -> None:
    """Every switch learns the VMs' MACs (frames to them are not flooded to the monitors as
    well) from a broadcast nobody answers: pings would make the VMs send ARP probes seconds
    later, which their tap flows would count."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    for vm in vms:
        v = lab.vm(vm)
        lab.send_frames(vm, [bytes(Ether(src=v.mac, dst="ff:ff:ff:ff:ff:ff")
                                   / IP(src=v.ip, dst="192.0.2.9") / UDP(dport=9))])


def test_counters_equal_captured_copies_local_remote_and_filtered(lab: Lab, taas: Taas) -> None:
    learn(lab, "vm1", "vm2", "vm3")
    sends = _sends(lab)
    baseline = observe(lab, sends, at=["mon"])["mon"]
    udp_only = TapFilterState("udp", "skip", (FilterRule(10, "mirror", protocol="udp"),))
    taas.service("S1", "mon", 3911)  # host1
    taas.flow("local", "S1", "vm1", "OUT")  # host1 -> host1
    taas.flow("remote", "S1", "vm2", "BOTH")  # host2 -> host1
    taas.flow("filtered", "S1", "vm3", "OUT", tap_filter=udp_only)  # host2, TCP is skipped
    taas.mirror("M1", "vm2", {"OUT": 4321}, lab.collectors[0].ip, "gre")  # host2 -> GRE
    res = taas.sync()
    assert {s.status for r in res.values() for s in r.statuses} == {"ACTIVE"}
    reader = CounterReader()
    before = totals(taas, reader)

    got = observe(lab, sends, at=["mon"])["mon"]
    copies = got - baseline  # frames flooded to mon anyway (unknown unicast) are not copies
    # vm3 > vm2 frames are copied twice: OUT of "filtered" (UDP passes) and IN of "remote"
    assert sum(copies.values()) == 22 and not any(b"TAAS-DP t" in f for f in copies)

    want = {("tap_flow", "local", "mirrored"): 7,
            ("tap_flow", "remote", "mirrored"): 5 + 3,  # OUT vm2>vm3 and IN vm3>vm2
            ("tap_flow", "filtered", "mirrored"): 3 + 4,
            ("tap_flow", "filtered", "filtered"): 6,
            ("tap_service", "S1", "delivered"): 22,
            ("tap_mirror", "M1", "sent:OUT"): 5}  # vm2's frames

    def grown() -> dict[tuple[str, str, str], int]:
        now = totals(taas, reader)
        return {k: now[k] - before[k] for k in want}

    # OVS moves datapath statistics to the flows about every 500 ms: poll.
    wait_until(lambda: grown() == want, 10, 0.2, what=f"counters {want}")
    now = totals(taas, reader)
    assert (now[("tap_service", "S1", "delivered_bytes")]
            - before[("tap_service", "S1", "delivered_bytes")]) == sum(
        len(f) * n for f, n in copies.items())


def _frame(lab: Lab, src: str, dst: str, marker: str, tcp: bool = False) -> bytes:
    """A frame to VM ``dst``'s MAC but not its IP: its stack drops it silently (no ICMP error
    or ARP that the counters would see too)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    s, d = lab.vm(src), lab.vm(dst)
    l4 = TCP(sport=4000, dport=80, flags="A") if tcp else UDP(sport=4000, dport=9999)
    return bytes(Ether(src=s.mac, dst=d.mac) / IP(src=s.ip, dst="192.0.2.9", ttl=9) / l4
                 / Raw(f"TAAS-DP {marker}".encode().ljust(80, b".")))


def _sends(lab: Lab) -> list[tuple[str, bytes]]:
    return ([("vm1", _frame(lab, "vm1", "vm3", f"l{i}")) for i in range(7)]
            + [("vm2", _frame(lab, "vm2", "vm3", f"r{i}")) for i in range(5)]
            + [("vm3", _frame(lab, "vm3", "vm2", f"in{i}")) for i in range(3)]
            + [("vm3", _frame(lab, "vm3", "vm1", f"u{i}")) for i in range(4)]
            + [("vm3", _frame(lab, "vm3", "vm1", f"t{i}", tcp=True)) for i in range(6)])


def test_dropped_packets_are_the_copies_a_rate_limit_dropped(lab: Lab, taas: Taas) -> None:
    """A tap flow's meter (source host) and a tap service's (destination host): what they
    dropped plus what the monitor got equals what was copied (or delivered), exactly.
    OVS credits a flow when the copy takes it, before the datapath's meters act: a local
    monitor's delivery flow counts the copies its tap flow's meter then drops, too."""
    learn(lab, "vm3")
    taas.service("S1", "mon", 3915)  # host1
    taas.service("S2", "vm4", 3916, max_pps=10)  # host1, limited delivery
    taas.flow("lim", "S1", "vm1", "OUT", max_pps=10)  # host1: limited copies
    taas.flow("fed", "S2", "vm2", "OUT")  # host2 -> host1
    res = taas.sync()
    assert {s.status for r in res.values() for s in r.statuses} == {"ACTIVE"}
    reader = CounterReader()
    before = totals(taas, reader)
    n = 120
    with lab.captures(["mon", "vm4"], direction="in") as caps:
        lab.send_frames("vm1", [_frame(lab, "vm1", "vm3", f"x{i}") for i in range(n)])
        lab.send_frames("vm2", [_frame(lab, "vm2", "vm3", f"y{i}") for i in range(n)])
    got = {vm: sum(1 for f in c.frames if b"TAAS-DP" in f) for vm, c in caps.items()}
    assert 0 < got["mon"] < n and 0 < got["vm4"] < n, got  # the meters dropped some

    def grown(*key: str) -> int:
        return totals(taas, reader)[key] - before[key]  # type: ignore[index]

    want = {("tap_flow", "lim", "mirrored"): n, ("tap_flow", "lim", "dropped"): n - got["mon"],
            ("tap_service", "S1", "delivered"): n,
            ("tap_service", "S2", "delivered"): n,  # (counted before its meter)
            ("tap_service", "S2", "dropped"): n - got["vm4"]}
    wait_until(lambda: {k: grown(*k) for k in want} == want, 10, 0.2,
               what=f"counters {want}")
