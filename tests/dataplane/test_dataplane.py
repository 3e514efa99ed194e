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
from taasdp import BCAST, MCAST, Taas, frame, gre_payloads, observe, prime

from taas.agent.ovs import tables as T
from taas.common.vlans import parse_vlan_filter
from taas.lab import Lab

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
    got = [g for g in gre_payloads(cap.frames) if g[2] in sent or g[2][8:] in sent]
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


def _foreign_flows(lab: Lab, host: str) -> dict[str, list[str]]:
    """Every flow on the host's shared bridges that is not taas's (stats stripped)."""
    out = {}
    for br in ("br-int", "br-tun"):
        lines = lab.ovs(host, ["ovs-ofctl", "--no-stats", "dump-flows", br]).splitlines()
        out[br] = sorted(ln.strip() for ln in lines
                         if "actions=" in ln and f"cookie={T.COOKIE:#x}" not in ln)
    return out


def _synthetic_flows(taas: Taas, n: int, monitor: str = "mon") -> dict[str, object]:
    """n OUT/IN/BOTH tap flows of absent ports (OpenFlow accepts in_port numbers of absent
    ports) on host1, into 10 services, as LocalPorts to add to the real ones."""
    from taas.agent.ovs.driver import LocalPort
    from taas.common.desired_state import PortFacts, TapFlowState

    ports, facts = {}, {}
    net = taas.lab.vm(monitor).network_id
    for s in range(10):
        taas.service(f"syn-s{s}", monitor, 3950 + s)
    for i in range(n):
        pid = f"syn-port-{i}"
        mac = f"fa:16:3f:00:{i >> 8:02x}:{i & 255:02x}"
        ports[pid] = LocalPort(pid, 1000 + i, 100 + i % 50, mac, f"syn{i}")
        facts[pid] = PortFacts(pid, net, ports[pid].mac, 100, "host1")
        taas.flows[f"syn-f{i}"] = TapFlowState(f"syn-f{i}", "p", f"syn-s{i % 10}", pid,
                                               ("OUT", "IN", "BOTH")[i % 3], None)
    return {"ports": ports, "facts": facts}


def test_idempotent_small_diffs_resync_and_foreign_flows_untouched(lab: Lab, taas: Taas) -> None:
    from dataclasses import replace as dc_replace

    from taasdp import local_ports

    before = _foreign_flows(lab, "host1")
    syn = _synthetic_flows(taas, 300)
    drv = taas.drivers["host1"]
    ports = {**local_ports(lab, "host1"), **syn["ports"]}  # type: ignore[dict-item]

    def state():  # noqa: ANN202
        st = taas.state("host1")
        return dc_replace(st, ports={**st.ports, **syn["facts"]},  # type: ignore[dict-item]
                          tap_flows=tuple(taas.flows.values()))

    first = drv.sync(state(), ports)
    total = len(lab.dump_flows("host1", "br-int", f"cookie={T.COOKIE:#x}/-1"))
    assert first.added > 600 and first.removed == 0
    dump1 = {b: drv.of[b].dump() for b in drv.of}
    again = drv.sync(state(), ports)
    assert (again.added, again.removed) == (0, 0)  # the switch agrees with the compiler
    assert {b: drv.of[b].dump() for b in drv.of} == dump1
    # 1% change: three tap flows go -> only their flows change
    for i in (3, 4, 5):
        del taas.flows[f"syn-f{i}"]
    small = drv.sync(state(), ports)
    assert 0 < small.added + small.removed <= 0.03 * total, (small, total)
    # Someone deletes taas flows (but not the canary): the next sync puts back exactly those.
    out_table = [f for f in drv.of["int"].dump() if f.table == T.INT_OUT.number]
    lab.ovs("host1", ["ovs-ofctl", "del-flows", "br-int", f"cookie={T.COOKIE:#x}/-1,table=210"])
    assert not drv.switch_was_reset()
    fix = drv.sync(state(), ports)
    assert (fix.added, fix.removed) == (len(out_table), 0)
    # The L2 agent wipes everything of ours: the canary says so, setup + sync restore.
    for br in ("br-int", "br-tun", "br-tap"):
        lab.ovs("host1", ["ovs-ofctl", "del-flows", br, f"cookie={T.COOKIE:#x}/-1"])
    assert drv.switch_was_reset()
    drv.setup()
    assert drv.sync(state(), ports).removed == 0
    assert not drv.switch_was_reset()
    # Never a foreign flow touched; removing all taas state leaves only the static flows.
    assert _foreign_flows(lab, "host1") == before
    taas.flows.clear()
    taas.services.clear()
    drv.sync(taas.state("host1"), local_ports(lab, "host1"))
    left = lab.dump_flows("host1", "br-int", f"cookie={T.COOKIE:#x}/-1")
    assert len(left) == 2  # the drop of patch-int-tap and the canary
    assert _foreign_flows(lab, "host1") == before


def _restart_vswitchd(lab: Lab, host: str) -> None:
    """Kill ovs-vswitchd of a lab host and start it again as the lab does; then put back what
    the L2 agent and the host would (the lab's L2 flows, br-phy's address)."""
    import os
    import time

    from taas.lab.sh import kill_pids, netns_cmd, read_pidfile, run

    h = lab.host(host)
    rd = h.run_dir
    pid = read_pidfile(f"{rd}/ovs-vswitchd.pid")
    assert pid
    kill_pids([pid])
    env = {**os.environ, "OVS_RUNDIR": rd, "OVS_DBDIR": rd, "OVS_LOGDIR": rd,
           "OVS_PKGDATADIR": "/usr/share/openvswitch"}
    run(netns_cmd(h.netns, ["ovs-vswitchd", h.ovsdb, f"--pidfile={rd}/ovs-vswitchd.pid",
                            f"--log-file={rd}/ovs-vswitchd.log", "--detach", "--no-chdir",
                            "-vconsole:off", "-vsyslog:off"]), env=env)
    deadline = time.monotonic() + 20
    while not os.path.exists(f"{rd}/br-int.mgmt") or not os.path.exists(f"{rd}/br-tun.mgmt"):
        assert time.monotonic() < deadline, "ovs-vswitchd did not come back"
        time.sleep(0.05)
    for b in ("br-int", "br-tun", "br-phy"):
        lab.ovs(host, ["ovs-ofctl", "add-flows", b, "-"],
                input=open(f"{rd}/{b}.l2flows").read())
    run(["ip", "-n", h.netns, "addr", "replace", f"{h.tunnel_ip}/24", "dev", "br-phy"])
    run(["ip", "-n", h.netns, "link", "set", "br-phy", "up"])


def test_ovs_restart_detected_and_restored(lab: Lab, taas: Taas) -> None:
    prime(lab)
    plan = [("vm1", "vm3", None, frame(lab, "vm1", "vm3", "r1")),
            ("vm2", BCAST, None, frame(lab, "vm2", BCAST, "r2"))]
    baseline = observe(lab, [(s, f) for s, _, _, f in plan])
    taas.service("S1", "mon", 3901)
    taas.flow("f1", "S1", "vm1", "OUT")
    taas.flow("f2", "S1", "vm2", "IN")
    taas.sync()
    assert not any(d.switch_was_reset() for d in taas.drivers.values())
    _restart_vswitchd(lab, "host1")
    drv = taas.drivers["host1"]
    assert drv.switch_was_reset()
    assert not taas.drivers["host2"].switch_was_reset()
    drv.setup()
    taas.sync()
    assert not drv.switch_was_reset()
    prime(lab)
    check(lab, taas, plan, baseline)


def test_remote_copies_go_only_to_the_destination_host(lab_factory) -> None:  # noqa: ANN001
    lab3: Lab = lab_factory(hosts=3)
    by_host: dict[str, list[str]] = {}
    for v in lab3.vms:
        by_host.setdefault(v.host, []).append(v.name)
    h_src, h_dst, h_other = (h.name for h in lab3.hosts)
    src, mon = by_host[h_src][0], by_host[h_dst][0]
    t = Taas(lab3)
    try:
        prime(lab3)
        t.service("S1", mon, 3901)
        t.flow("f1", "S1", src, "BOTH")
        t.sync()
        frames = [frame(lab3, src, BCAST, f"flood{i}") for i in range(5)]
        vxlan = "udp port 4789 and dst host {}"
        with lab3.captures({h_dst: ("phy0", vxlan.format(lab3.host(h_dst).tunnel_ip)),
                            h_other: ("phy0", vxlan.format(lab3.host(h_other).tunnel_ip)),
                            mon: (None, None)}) as caps:
            lab3.send_frames(src, frames)

        def taas_vnis(fs: list[bytes]) -> list[int]:
            vnis = [int.from_bytes(f[46:49], "big") for f in fs if len(f) > 50]
            return [v for v in vnis if v >= 16_000_000]

        assert taas_vnis(caps[h_dst].frames) == [16_003_901] * 5
        assert taas_vnis(caps[h_other].frames) == []  # tenant floods reach it, copies never
        assert len(caps[h_other].frames) >= 5  # (it does see the tenant broadcast)
        got = Counter(f for f in caps[mon].frames if f in frames)
        tenant = int(lab3.vm(mon).network_id == lab3.vm(src).network_id)
        assert got == Counter({f: tenant + 1 for f in frames})  # (tenant broadcast) + one copy
    finally:
        t.close()


def test_br_tap_deleted_is_rebuilt_by_the_next_sync(lab: Lab, taas: Taas) -> None:
    prime(lab)
    plan = [("vm2", "vm1", None, frame(lab, "vm2", "vm1", "d1"))]
    baseline = observe(lab, [(s, f) for s, _, _, f in plan])
    taas.service("S1", "mon", 3901)
    taas.flow("f1", "S1", "vm1", "IN")
    taas.sync()
    lab.ovs("host1", ["ovs-vsctl", "del-br", "br-tap"])
    assert taas.drivers["host1"].switch_was_reset()
    res = taas.sync()  # no explicit setup(): sync notices the missing bridge itself
    assert res["host1"].added > 0
    assert not taas.drivers["host1"].switch_was_reset()
    check(lab, taas, plan, baseline)


def test_unreachable_destination_is_an_error_not_a_silent_drop(lab: Lab, taas: Taas) -> None:
    from dataclasses import replace as dc_replace

    prime(lab)
    plan = [("vm1", BCAST, None, frame(lab, "vm1", BCAST, "u1"))]
    baseline = observe(lab, [(s, f) for s, _, _, f in plan])
    taas.service("S1", "vm5", 3901)
    # host2's agent reported a tunnel IP for which host1 has no VXLAN port
    taas.services["S1"] = dc_replace(taas.services["S1"], dest_tunnel_ip="192.0.2.77")
    taas.flow("f1", "S1", "vm1", "OUT")
    res = taas.sync()
    st = {s.id: s for s in res["host1"].statuses}
    assert st["S1"].status == "ERROR" and "192.0.2.77" in (st["S1"].reason or "")
    assert st["f1"].status == "ERROR" and st["f1"].reason == st["S1"].reason
    assert res["host1"].taas_ids == ()
    assert {s.status for s in res["host2"].statuses} == {"ACTIVE"}  # delivery side is fine
    taas.flows.clear()  # the model: no copies anywhere
    check(lab, taas, plan, baseline)


def test_incremental_sync_spawns_no_process_and_verify_repairs_in_place_edits(
        lab: Lab, taas: Taas, monkeypatch: pytest.MonkeyPatch) -> None:
    from taasdp import local_ports

    from taas.agent.ovs import tool

    taas.service("S1", "mon", 3901)
    taas.flow("f1", "S1", "vm1", "OUT")
    taas.sync()  # warms the OVSDB replica and the OpenFlow connections (and probes spelling)
    calls: list[str] = []
    real = tool.run
    monkeypatch.setattr(tool, "run",
                        lambda args, **kw: calls.append(args[0]) or real(args, **kw))
    remote_vm = next(v.name for v in lab.vms if v.host != lab.vm("mon").host)
    taas.flow("f2", "S1", remote_vm, "IN", "10-20,30")
    res = taas.sync()
    remote_host = lab.vm(remote_vm).host
    assert res[remote_host].added >= 4  # br-int pieces + the remote path on br-tap and br-tun
    # Facts from the OVSDB replica; counts and bundles over the bridges' OpenFlow connections.
    assert calls == []
    monkeypatch.undo()
    # What went over the wire reads back exactly as compiled: full dumps find nothing to do.
    for h, d in taas.drivers.items():
        again = d.sync(taas.state(h), local_ports(lab, h), verify=True)
        assert (again.added, again.removed) == (0, 0), h
    # Someone rewrites a taas flow in place (same count): only verify=True sees and repairs it.
    drv = taas.drivers[remote_host]
    victim = next(f for f in drv.of["tun"].dump() if f.table == T.TUN_CLASSIFY.number
                  and f.priority == T.PRIO_TUN and f.field("dl_vlan") == "3901")
    lab.ovs(remote_host, ["ovs-ofctl", "-O", "OpenFlow14", "add-flow", "br-tun",
                          f"cookie={T.COOKIE:#x},{victim.spec()},actions=drop"])
    state, ports = taas.state(remote_host), local_ports(lab, remote_host)
    assert (drv.sync(state, ports).added, drv.sync(state, ports).removed) == (0, 0)
    fixed = drv.sync(state, ports, verify=True)
    assert (fixed.added, fixed.removed) == (1, 1)
    assert victim in drv.of["tun"].dump()


def test_a_refused_flow_fails_the_whole_bundle_and_the_connection_recovers(
        lab: Lab, taas: Taas) -> None:
    from taas.agent.ovs.flows import Flow
    from taas.agent.ovs.switch import SwitchError

    of = taas.drivers["host1"].of["tap"]
    good = Flow.raw(0, 299, {"in_port": "1", "dl_vlan": "3777"}, "IN_PORT")
    bad = Flow.raw(0, 299, {"in_port": "1", "dl_vlan": "3778"},
                    "resubmit(,7),output:1,clone(set_field:0x1->reg40)")  # no reg40
    with pytest.raises(SwitchError, match="reg40"):  # not encodable: ovs-ofctl refuses it too
        of.apply([], [bad])
    bad = good._replace(table=255, match=("in_port=1", "dl_vlan=3779"))  # no table 255
    with pytest.raises(SwitchError):
        of.apply([], [good, bad])
    assert good not in of.dump()  # nothing of the refused bundle was applied
    of.apply([], [good])  # the same connection goes on working
    assert good in of.dump()
    of.apply([good], [])
    assert good not in of.dump()


def _mirror_vlan(taas: Taas, host: str, mirror: str, direction: str) -> int:
    """The VLAN br-tap sends out of the tap mirror's tunnel port (read back from the switch)."""
    drv = taas.drivers[host]
    port = drv._facts(fresh=True)[0].mirror_ports[(mirror, direction)]
    (f,) = [f for f in drv.of["tap"].dump() if f.actions == f"pop_vlan,output:{port}"]
    return int(f.field("dl_vlan") or 0)


def test_tap_mirror_vlans_stay_put_across_restart_and_a_lower_id_mirror(
        lab: Lab, taas: Taas) -> None:
    from taas.agent.ovs.driver import OvsDriver

    col = lab.collectors[0]
    host = lab.vm("vm1").host
    other = next(v.name for v in lab.vms_on(host) if v.name != "vm1")
    taas.mirror("m2", "vm1", {"OUT": 102}, col.ip, "gre")
    taas.sync()
    v2 = _mirror_vlan(taas, host, "m2", "OUT")
    # The agent restarts (a new driver) and a mirror with a lower id appears: m2 keeps its
    # VLAN (learnt from the switch), so copies in flight never change tunnel.
    taas.drivers[host].close()
    h = lab.host(host)
    taas.drivers[host] = OvsDriver(h.ovsdb, h.run_dir, h.name, h.tunnel_ip)
    taas.drivers[host].setup()
    taas.mirror("m1", other, {"OUT": 101}, col.ip, "gre")
    res = taas.sync()
    assert {s.status for s in res[host].statuses} == {"ACTIVE"}
    assert _mirror_vlan(taas, host, "m2", "OUT") == v2
    assert _mirror_vlan(taas, host, "m1", "OUT") != v2


def test_held_taas_ids_read_back_by_a_new_driver(lab: Lab, taas: Taas) -> None:
    from taas.agent.ovs.driver import OvsDriver

    mon_host = lab.vm("mon").host
    here = [v.name for v in lab.vms_on(mon_host) if v.name != "mon"]
    away = next(v for v in lab.vms if v.host != mon_host)
    taas.service("s0", "mon", 3900)
    taas.service("s1", "mon", 3901)
    # decoys: a vlan_filter of exact VLAN 10 (dl_vlan=10 in table 210), an IN source in a
    # network with ports elsewhere (patch-tun hook on dl_vlan=<local VLAN>), a tap mirror
    # (a VLAN of 4000-4094); none of them is a taas_id
    taas.flow("f0", "s0", here[0], "OUT", "10")
    taas.flow("f1", "s1", away.name, "IN")
    taas.flow("f2", "s1", here[0], "IN")
    taas.mirror("m1", here[0], {"OUT": 102}, lab.collectors[0].ip, "gre")
    res = taas.sync()
    assert {s.status for r in res.values() for s in r.statuses} == {"ACTIVE"}
    for h in lab.hosts:
        fresh = OvsDriver(h.ovsdb, h.run_dir, h.name, h.tunnel_ip)
        try:
            held = fresh.held_taas_ids()
        finally:
            fresh.close()
        assert held == res[h.name].taas_ids
        if h.name == mon_host:
            assert held == (3900, 3901)
    # nothing held once everything is gone
    taas.flows.clear()
    taas.services.clear()
    taas.mirrors.clear()
    taas.sync()
    assert all(d.held_taas_ids() == () for d in taas.drivers.values())
