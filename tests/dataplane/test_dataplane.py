"""The OVS driver on a real lab: real OVS, real frames, captures at every VM.

Each test drives one OvsDriver per lab host with hand-built desired states (tests/dataplane/
taasdp.py), sends frames with a unique payload from VM namespaces and compares what every VM
received against a baseline without mirroring plus what the model says the monitors get:
one copy per tap flow that matches a frame, byte-identical to the frame the source VM sent or
received, and nothing anywhere else.
"""

from __future__ import annotations

import re
import struct
from collections import Counter

import pytest
from taasdp import BCAST, MCAST, Taas, frame, observe, prime

from taas.agent.ovs import tables as T
from taas.agent.ovs.flows import parse_vlan_filter
from taas.lab.core import Lab

pytestmark = pytest.mark.ovs


def model(lab: Lab, taas: Taas, sender: str, dst: str, tag: int | None) -> Counter[str]:
    """How many copies of one frame each monitor VM must get: one per matching tap flow."""
    by_port = {v.port_id: v for v in lab.vms}
    s = lab.vm(sender)
    dst_mac = dst if dst in (BCAST, MCAST) else lab.vm(dst).mac
    out: Counter[str] = Counter()
    for f in taas.flows.values():
        src = by_port[f.source_port]
        ranges = parse_vlan_filter(f.vlan_filter)
        if ranges is not None and (tag is None or not any(a <= tag <= b for a, b in ranges)):
            continue
        hit_out = src.name == sender and f.direction in ("OUT", "BOTH")
        delivered = (src.network_id == s.network_id and src.name != sender
                     and (dst_mac == src.mac or dst_mac in (BCAST, MCAST)))
        hit_in = delivered and f.direction in ("IN", "BOTH")
        if hit_out or hit_in:
            out[by_port[taas.services[f.tap_service_id].port_id].name] += 1
    return out


def check(lab: Lab, taas: Taas, plan: list[tuple[str, str, int | None, bytes]],
          baseline: dict[str, Counter[bytes]]) -> None:
    got = observe(lab, [(s, f) for s, _, _, f in plan])
    sent = {f for *_, f in plan}
    for vm in got:
        want = Counter({f: n for f, n in baseline[vm].items() if f in sent})
        for s, d, tag, f in plan:
            want[f] += model(lab, taas, s, d, tag)[vm]
        have = Counter({f: n for f, n in got[vm].items() if f in sent})
        assert have == want, f"{vm}: extra {have - want}, missing {want - have}"


def drop_counters(lab: Lab) -> list[int]:
    """n_packets of the taas drops: br-tap's default drop, br-int's drop of patch-int-tap."""
    counts = []
    for h in lab.hosts:
        for br, pat in (("br-tap", "priority=0 actions=drop"),
                        ("br-int", f"priority={T.PRIO_DROP_PATCH},in_port=")):
            for line in lab.dump_flows(h.name, br, f"cookie={T.COOKIE:#x}/-1"):
                if pat in line and f"table={T.CANARY_TABLE}" not in line:
                    counts.append(int(re.search(r"n_packets=(\d+)", line).group(1)))  # type: ignore[union-attr]
    return counts


def test_directions_local_remote_services_isolation_and_delete(lab: Lab, taas: Taas) -> None:
    prime(lab)
    net_a = ["mon", "vm1", "vm2", "vm3"]
    plan: list[tuple[str, str, int | None, bytes]] = []
    for s in net_a:
        for d in [x for x in net_a if x != s] + [BCAST, MCAST]:
            plan.append((s, d, None, frame(lab, s, d, f"{s}>{d}")))
    # net-b: a frame to vm1's MAC in another network, and net-b broadcast: never mirrored
    plan.append(("vm4", "vm1", None, frame(lab, "vm4", "vm1", "b>vm1mac")))
    plan.append(("vm5", BCAST, None, frame(lab, "vm5", BCAST, "b>bcast")))
    baseline = observe(lab, [(s, f) for s, _, _, f in plan])
    assert all(sum(c.values()) for c in baseline.values()), "the tenant network did not work"

    taas.service("S1", "mon", 3901)  # host1
    taas.service("S2", "vm5", 3902)  # host2
    taas.service("S3", "vm4", 3903)  # host1
    taas.flow("f1", "S1", "vm1", "OUT")  # local
    taas.flow("f2", "S1", "vm2", "IN")  # host2 -> host1
    taas.flow("f3", "S2", "vm3", "BOTH")  # local on host2
    taas.flow("f4", "S2", "vm1", "IN")  # host1 -> host2
    taas.flow("f5", "S3", "vm2", "OUT")  # host2 -> host1
    taas.flow("f6", "S1", "vm3", "IN")  # with f2: broadcasts give S1 two copies
    taas.flow("f7", "S3", "vm1", "BOTH")  # vm1 feeds three services
    res = taas.sync()
    assert {s.status for r in res.values() for s in r.statuses} == {"ACTIVE"}
    assert res["host1"].taas_ids == (3901, 3902, 3903)
    check(lab, taas, plan, baseline)

    # Delete a tap flow, and a service with its flows: every other mirror stays as it was.
    del taas.flows["f1"], taas.flows["f6"], taas.flows["f3"], taas.flows["f4"]
    del taas.services["S2"]
    res = taas.sync()
    assert res["host2"].taas_ids == (3901, 3903)
    check(lab, taas, plan, baseline)
    # Nothing but copies ever entered br-tap, nothing but copies came back from it.
    assert drop_counters(lab) and set(drop_counters(lab)) == {0}


def test_vlan_filter_on_vm_tagged_frames(lab: Lab, taas: Taas) -> None:
    prime(lab)
    plan = []
    for tag in (None, 15, 25, 30):
        for d in ("vm2", BCAST):
            plan.append(("vm1", d, tag, frame(lab, "vm1", d, f"tag{tag}>{d}", tag)))
    baseline = observe(lab, [(s, f) for s, _, _, f in plan])
    taas.service("S1", "mon", 3901)
    taas.service("S2", "vm5", 3902)
    taas.service("S3", "vm4", 3903)
    taas.flow("f1", "S1", "vm1", "OUT", "10-20")
    taas.flow("f2", "S2", "vm1", "OUT")
    taas.flow("f3", "S3", "vm1", "BOTH", "30,40-50")
    taas.sync()
    check(lab, taas, plan, baseline)


def _gre_payloads(frames: list[bytes]) -> list[tuple[int, int | None, bytes]]:
    """(GRE protocol, key, payload) of the IPv4 GRE packets among Ethernet frames."""
    out = []
    for f in frames:
        if len(f) < 38 or f[12:14] != b"\x08\x00" or f[23] != 47:
            continue
        ip = f[14:]
        gre = ip[(ip[0] & 0xF) * 4:]
        flags, proto = struct.unpack("!HH", gre[:4])
        off, key = 4, None
        if flags & 0x8000:
            off += 4
        if flags & 0x2000:
            key = struct.unpack("!I", gre[off:off + 4])[0]
            off += 4
        if flags & 0x1000:
            off += 4
        out.append((proto, key, gre[off:]))
    return out


def test_tap_mirror_gre_and_erspan_reach_the_collector(lab: Lab, taas: Taas) -> None:
    prime(lab)
    col = lab.collectors[0]
    taas.mirror("m1", "vm1", {"IN": 101, "OUT": 102}, col.ip, "gre")
    taas.mirror("m2", "vm2", {"BOTH": 103}, col.ip, "erspanv1")
    res = taas.sync()
    assert {s.status for r in res.values() for s in r.statuses} == {"ACTIVE"}
    to_vm1 = frame(lab, "mon", "vm1", "mon>vm1")
    from_vm1 = frame(lab, "vm1", "vm3", "vm1>vm3")
    from_vm2 = frame(lab, "vm2", "vm3", "vm2>vm3")
    bcast = frame(lab, "vm3", BCAST, "vm3>bcast")
    # The first frame also resolves the collector's MAC for OVS's tunnel (ARP on br-phy).
    with lab.capture("col1", bpf="ip proto 47") as cap:
        for vm, f in (("mon", to_vm1), ("vm1", from_vm1), ("vm2", from_vm2), ("vm3", bcast)):
            lab.send_frames(vm, [f])
    sent = {to_vm1, from_vm1, from_vm2, bcast}  # (not the VMs' ICMP answers to them)
    got = [g for g in _gre_payloads(cap.frames) if g[2] in sent or g[2][8:] in sent]
    gre = Counter((k, p) for proto, k, p in got if proto == 0x6558)
    assert gre == Counter({(101, to_vm1): 1, (102, from_vm1): 1, (101, bcast): 1})
    erspan = []
    for proto, _, p in got:
        if proto == 0x88BE:
            ver_vlan, sess, idx = struct.unpack("!HHI", p[:8])
            erspan.append((ver_vlan >> 12, sess & 0x3FF, p[8:]))
    assert Counter(erspan) == Counter({(1, 103, from_vm2): 1, (1, 103, bcast): 1})
    # Removing the mirrors removes their ports (only ours) and flows.
    taas.mirrors.clear()
    taas.sync()
    for h in lab.hosts:
        ports = lab.ovs(h.name, ["ovs-vsctl", "list-ports", "br-tap"]).split()
        assert sorted(ports) == ["patch-tap-int", "patch-tap-tun"]
