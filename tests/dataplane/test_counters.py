"""Counters on real OVS: what the driver reads from the flows that count equals the packets
captured at the monitor (tap flows, tap services, tap mirrors) and, for a filtered tap flow,
the frames its filter skipped. The server's accumulation is tested in
tests/server/test_counters.py; agent restarts through the server in tests/e2e."""

from __future__ import annotations

from collections import Counter

import pytest
from taasdp import Taas, observe, prime

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


def test_counters_equal_captured_copies_local_remote_and_filtered(lab: Lab, taas: Taas) -> None:
    prime(lab)
    sends = _sends(lab)
    baseline = observe(lab, sends, at=["mon"])["mon"]
    udp_only = TapFilterState("udp", "skip", (FilterRule(10, "mirror", protocol="udp"),))
    taas.service("S1", "mon", 3911)  # host1
    taas.flow("local", "S1", "vm1", "OUT")  # host1 -> host1
    taas.flow("remote", "S1", "vm2", "BOTH")  # host2 -> host1
    taas.flow("filtered", "S1", "vm3", "OUT", tap_filter=udp_only)  # host2, TCP is skipped
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
            ("tap_service", "S1", "delivered"): 22}

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
