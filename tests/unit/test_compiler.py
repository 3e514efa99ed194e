"""The flow compiler, asked where packets go through a fake OpenFlow switch (tests/unit/fakeof)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakeof import FakeHost, Out, Pkt

from taas.agent.ovs.compile import BR_INT, BR_TAP, BR_TUN, BridgeFacts, compile_host
from taas.agent.ovs.driver import LocalPort, diff
from taas.agent.ovs.flows import Flow, vlan_ranges_to_masks
from taas.common import placement
from taas.common.desired_state import (
    DesiredState,
    PortFacts,
    TapFlowState,
    TapMirrorState,
    TapServiceState,
)
from taas.common.vlans import parse_vlan_filter

BCAST = "ff:ff:ff:ff:ff:ff"
MCAST = "01:00:5e:00:00:01"
IPS = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3"}
VX = {"10.0.0.1": 11, "10.0.0.2": 12, "10.0.0.3": 13}  # ofport of the VXLAN port to each IP
NET_VNI = {"netA": 100, "netB": 200}


def facts_for(host: str, mirror_ports: dict[tuple[str, str], int] | None = None) -> BridgeFacts:
    return BridgeFacts(int_patch_tap=1, tap_patch_int=1, tap_patch_tun=2, tun_patch_tap=1,
                       int_patch_tun=2,
                       vxlan_ports={ip: p for ip, p in VX.items() if ip != IPS[host]},
                       mirror_ports=mirror_ports or {})


class Cloud:
    """Ports on hosts; builds each host's desired state the way the server would."""

    def __init__(self) -> None:
        self.ports: dict[str, tuple[str, LocalPort, str]] = {}  # id -> (host, port, network)
        self.services: list[TapServiceState] = []
        self.flows: list[TapFlowState] = []
        self.mirrors: list[TapMirrorState] = []
        self.mirror_ports: dict[tuple[str, str], int] = {}

    def port(self, pid: str, host: str, net: str, ofport: int, mac: str) -> LocalPort:
        vlan = {"netA": 1, "netB": 2}[net] + (10 if host == "h2" else 0)  # per-host local VLAN
        p = LocalPort(pid, ofport, vlan, mac, f"tap-{pid}")
        self.ports[pid] = (host, p, net)
        return p

    def service(self, sid: str, port: str, taas_id: int) -> None:
        host = self.ports[port][0]
        self.services.append(TapServiceState(sid, "p", port, taas_id, 16_000_000 + taas_id,
                                             host, IPS[host]))

    def flow(self, fid: str, sid: str, src: str, direction: str, vf: str | None = None) -> None:
        self.flows.append(TapFlowState(fid, "p", sid, src, direction, vf))  # type: ignore[arg-type]

    def state(self, host: str):
        local = {pid: p for pid, (h, p, _) in self.ports.items() if h == host}
        # The server's own rule of which resources a host's state holds.
        services, flows, mirrors = placement.host_share(
            host, self.services, self.flows, self.mirrors,
            lambda pid: self.ports[pid][0] if pid in self.ports else None)
        facts = {pid: PortFacts(pid, net, p.mac, NET_VNI[net], h)
                 for pid, (h, p, net) in self.ports.items()}
        ds = DesiredState(host, 1, tuple(services), tuple(flows), tuple(mirrors), facts)
        return ds, local

    def compile(self, host: str):
        ds, local = self.state(host)
        return compile_host(ds, local, facts_for(host, self.mirror_ports), host)

    def fake(self, host: str) -> FakeHost:
        f = facts_for(host, self.mirror_ports)
        return FakeHost(self.compile(host).flows, f, tuple(f.vxlan_ports.values()))

    def send_from(self, pid: str, pkt: Pkt) -> list[Out]:
        host, p, _ = self.ports[pid]
        return self.fake(host).send(BR_INT, p.ofport, pkt)

    def from_tunnel(self, host: str, net: str, pkt: Pkt) -> list[Out]:
        """A tenant frame arriving at ``host`` from another host (br-tun -> patch-tun)."""
        vlan = {"netA": 1, "netB": 2}[net] + (10 if host == "h2" else 0)
        return self.fake(host).send(BR_INT, 2, replace(pkt, vlans=(vlan,) + pkt.vlans))

    def deliver_remote(self, outs: list[Out], host: str) -> list[Out]:
        """Carry what left through VXLAN ports to ``host``'s br-tun."""
        dest_ip = IPS[host]
        res: list[Out] = []
        for o in outs:
            if o.bridge == BR_TUN and o.port == VX[dest_ip]:
                src_ip = next(ip for ip, port in facts_for(host).vxlan_ports.items())
                res += self.fake(host).send(BR_TUN, facts_for(host).vxlan_ports[src_ip], o.pkt)
        return res


def copies(outs: list[Out]) -> list[Out]:
    """Everything but the original frame's tenant forwarding."""
    return [o for o in outs if o.bridge != "NORMAL"]


def normal(outs: list[Out]) -> list[Out]:
    return [o for o in outs if o.bridge == "NORMAL"]


@pytest.fixture
def cloud() -> Cloud:
    c = Cloud()
    c.port("a", "h1", "netA", 10, "fa:16:3e:00:00:0a")
    c.port("b", "h1", "netA", 11, "fa:16:3e:00:00:0b")
    c.port("mon", "h1", "netA", 12, "fa:16:3e:00:00:99")
    c.port("mon2", "h1", "netB", 13, "fa:16:3e:00:00:98")
    c.port("x", "h1", "netB", 14, "fa:16:3e:00:00:0a")  # same MAC as a, other network
    c.port("r", "h2", "netA", 20, "fa:16:3e:00:00:0c")
    c.port("rmon", "h2", "netA", 21, "fa:16:3e:00:00:97")
    return c


A, B, X, R = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0c"


def test_out_local_copy_once_untagged_and_tenant_continues(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "OUT")
    pkt = Pkt(A, B, payload="hello")
    outs = cloud.send_from("a", pkt)
    assert copies(outs) == [Out(BR_INT, 12, pkt)]
    assert normal(outs) == [Out("NORMAL", BR_INT, pkt)]
    # OUT does not copy frames delivered to a
    assert copies(cloud.send_from("b", Pkt(B, A))) == []


@pytest.mark.parametrize("dst", [A, BCAST, MCAST])
def test_in_copies_unicast_broadcast_multicast(cloud: Cloud, dst: str) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "IN")
    pkt = Pkt(B, dst)
    assert copies(cloud.send_from("b", pkt)) == [Out(BR_INT, 12, pkt)]
    # nor what a sends (its own broadcast is not delivered to it)
    assert copies(cloud.send_from("a", Pkt(A, dst if dst != A else B))) == []


def test_in_from_other_host_is_untagged_copy(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "IN")
    for dst in (A, BCAST):
        pkt = Pkt(R, dst, payload="remote")
        outs = cloud.from_tunnel("h1", "netA", pkt)
        assert copies(outs) == [Out(BR_INT, 12, pkt)]
        # the tenant frame itself goes on, still carrying its local VLAN, to NORMAL
        assert [o.pkt.vlans for o in normal(outs)] == [(1,)]
    # the same MAC in another network is not mirrored
    assert copies(cloud.from_tunnel("h1", "netB", Pkt(R, A))) == []


def test_same_mac_in_other_network_not_mirrored(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "BOTH")
    # x (netB) has a's MAC: frames to it from netB ports are not frames delivered to a
    assert copies(cloud.send_from("mon2", Pkt("fa:16:3e:00:00:98", X))) == []
    assert copies(cloud.send_from("mon2", Pkt("fa:16:3e:00:00:98", BCAST))) == []
    assert copies(cloud.send_from("x", Pkt(X, BCAST))) == []


def test_both_each_frame_once(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "BOTH")
    for src, pkt in (("a", Pkt(A, B)), ("a", Pkt(A, BCAST)), ("b", Pkt(B, A)),
                     ("b", Pkt(B, BCAST))):
        assert copies(cloud.send_from(src, pkt)) == [Out(BR_INT, 12, pkt)], (src, pkt)


def test_one_source_several_services_each_gets_one_copy(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "mon2", 3902)
    cloud.service("s3", "rmon", 3903)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.flow("f2", "s2", "a", "BOTH")
    cloud.flow("f3", "s3", "a", "OUT")
    pkt = Pkt(A, B)
    outs = cloud.send_from("a", pkt)
    assert sorted((o.bridge, o.port) for o in copies(outs)) == [
        (BR_INT, 12), (BR_INT, 13), (BR_TUN, VX["10.0.0.2"])]
    assert normal(outs) == [Out("NORMAL", BR_INT, pkt)]
    remote = cloud.deliver_remote(outs, "h2")
    assert remote == [Out(BR_INT, 21, pkt)]


def test_out_on_a_and_in_on_b_both_work(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "mon2", 3902)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.flow("f2", "s2", "b", "IN")
    pkt = Pkt(A, B)
    assert sorted(o.port for o in copies(cloud.send_from("a", pkt))) == [12, 13]


def test_many_sources_into_one_service(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.flow("f2", "s1", "b", "OUT")
    cloud.flow("f3", "s1", "r", "OUT")
    for src, mac in (("a", A), ("b", B)):
        assert copies(cloud.send_from(src, Pkt(mac, BCAST))) == [Out(BR_INT, 12, Pkt(mac, BCAST))]
    outs = cloud.send_from("r", Pkt(R, BCAST))
    assert [(o.bridge, o.port, o.pkt.tun_id) for o in copies(outs)] == [
        (BR_TUN, VX["10.0.0.1"], 16_003_901)]
    assert cloud.deliver_remote(outs, "h1") == [Out(BR_INT, 12, Pkt(R, BCAST))]


def test_remote_goes_only_to_destination_host_untagged(cloud: Cloud) -> None:
    cloud.service("s1", "rmon", 3901)
    cloud.flow("f1", "s1", "a", "BOTH")
    pkt = Pkt(A, BCAST)
    outs = copies(cloud.send_from("a", pkt))
    assert [(o.bridge, o.port) for o in outs] == [(BR_TUN, VX["10.0.0.2"])]
    assert outs[0].pkt == replace(pkt, tun_id=16_003_901)  # no VLAN left on the wire
    assert cloud.deliver_remote(outs, "h2") == [Out(BR_INT, 21, pkt)]


def test_copies_never_reach_tenant_paths(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "rmon", 3902)
    cloud.flow("f1", "s1", "a", "BOTH")
    cloud.flow("f2", "s2", "b", "BOTH")
    for src, pkt in (("a", Pkt(A, BCAST)), ("b", Pkt(B, A)), ("mon", Pkt("fa:16:3e:00:00:99",
                                                                        BCAST))):
        outs = cloud.send_from(src, pkt)
        assert normal(outs) == [Out("NORMAL", BR_INT, pkt)]  # only the original, once
        for o in copies(outs):
            assert (o.bridge, o.port) in {(BR_INT, 12), (BR_TUN, VX["10.0.0.2"])}


def test_patch_ports_drop_everything_that_is_not_a_copy(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "OUT")
    h1 = cloud.fake("h1")
    # a tenant frame that NORMAL would flood to patch-int-tap, tagged or not: dropped in br-tap
    for vlans in ((), (1,), (3902,), (4000,)):
        assert h1.send(BR_TAP, 1, Pkt(B, BCAST, vlans)) == []
        assert h1.send(BR_INT, 1, Pkt(B, BCAST, vlans)) == []
    # unknown taas VNI from a tunnel is tenant traffic for Neutron, never a copy
    assert [o.bridge for o in h1.send(BR_TUN, 12, Pkt(R, BCAST, tun_id=16_003_950))] == ["NORMAL"]
    # a copy for a service whose destination is elsewhere never comes back from br-tun
    assert h1.send(BR_TUN, 1, Pkt(B, BCAST, (3901,))) == []


def test_vlan_filter(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "mon2", 3902)
    cloud.flow("f1", "s1", "a", "OUT", "10-20,30")
    cloud.flow("f2", "s2", "a", "OUT")
    cases = {(): [13], (10,): [12, 13], (15,): [12, 13], (20,): [12, 13], (21,): [13],
             (30,): [12, 13], (9,): [13], (31,): [13]}
    for vlans, want in cases.items():
        pkt = Pkt(A, B, vlans)
        outs = copies(cloud.send_from("a", pkt))
        assert sorted(o.port for o in outs) == want, vlans
        assert all(o.pkt == pkt for o in outs)  # the VM's own tag is kept, nothing else


def test_vlan_filter_in_from_tunnel(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "IN", "100-200")
    assert len(copies(cloud.from_tunnel("h1", "netA", Pkt(R, A, (150,))))) == 1
    assert copies(cloud.from_tunnel("h1", "netA", Pkt(R, A, (250,)))) == []
    assert copies(cloud.from_tunnel("h1", "netA", Pkt(R, A))) == []


def test_deleting_one_tap_flow_leaves_the_others(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "mon2", 3902)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.flow("f2", "s2", "a", "OUT")
    cloud.flow("f3", "s1", "b", "IN")
    before = cloud.compile("h1").flows
    cloud.flows = [f for f in cloud.flows if f.id != "f1"]
    after = cloud.compile("h1").flows
    pkt = Pkt(A, B)
    # f2 (OUT a -> s2) still, once; f3 (IN b -> s1) still
    assert sorted(o.port for o in copies(cloud.send_from("a", pkt))) == [12, 13]
    assert sorted(o.port for o in copies(cloud.send_from("a", Pkt(A, BCAST)))) == [12, 13]
    assert [o.port for o in copies(cloud.send_from("b", Pkt(B, A)))] == []
    # only flows of the changed source are touched
    dels, adds = diff(before[BR_INT], after[BR_INT])
    assert all(f.field("in_port") == "10" for f in dels | adds)
    assert before[BR_TAP] == after[BR_TAP] and before[BR_TUN] == after[BR_TUN]


def test_tap_mirror_both_directions(cloud: Cloud) -> None:
    cloud.mirrors.append(TapMirrorState("m1", "p", "a", {"IN": 101, "OUT": 102}, "192.0.2.9",
                                        "gre"))
    cloud.mirror_ports = {("m1", "IN"): 7, ("m1", "OUT"): 8}
    pkt = Pkt(A, B)
    assert copies(cloud.send_from("a", pkt)) == [Out(BR_TAP, 8, pkt)]
    assert copies(cloud.send_from("b", Pkt(B, A))) == [Out(BR_TAP, 7, Pkt(B, A))]
    assert copies(cloud.send_from("b", Pkt(B, BCAST))) == [Out(BR_TAP, 7, Pkt(B, BCAST))]


def test_tap_mirror_both_key_and_missing_port(cloud: Cloud) -> None:
    cloud.mirrors.append(TapMirrorState("m1", "p", "a", {"BOTH": 103}, "192.0.2.9", "erspanv1"))
    c = cloud.compile("h1")
    assert [(s.kind, s.status) for s in c.statuses] == [("tap_mirror", "ERROR")]
    cloud.mirror_ports = {("m1", "BOTH"): 7}
    assert [(s.kind, s.status) for s in cloud.compile("h1").statuses] == [("tap_mirror", "ACTIVE")]
    assert copies(cloud.send_from("a", Pkt(A, B))) == [Out(BR_TAP, 7, Pkt(A, B))]
    assert copies(cloud.send_from("b", Pkt(B, A))) == [Out(BR_TAP, 7, Pkt(B, A))]


def test_statuses_explain_errors(cloud: Cloud) -> None:
    cloud.service("s1", "rmon", 3901)
    cloud.flow("f1", "s1", "a", "OUT")
    ds, local = cloud.state("h1")
    # the destination's host has no tunnel port here
    f = replace(facts_for("h1"), vxlan_ports={})
    c = compile_host(ds, local, f, "h1")
    st = {s.id: s for s in c.statuses}
    assert st["s1"].status == "ERROR" and "10.0.0.2" in (st["s1"].reason or "")
    assert st["f1"].status == "ERROR"
    assert not any(fl.table == 210 for fl in c.flows[BR_INT])
    # the destination host has no tunnel IP
    ds2 = replace(ds, tap_services=(replace(ds.tap_services[0], dest_tunnel_ip=None),))
    st2 = {s.id: s for s in compile_host(ds2, local, facts_for("h1"), "h1").statuses}
    assert st2["s1"].reason == "destination host h2 has no tunnel IP"
    # the source port is bound here but not found on br-int
    local2 = {k: v for k, v in local.items() if k != "a"}
    ds3 = replace(ds, ports={**ds.ports, "a": replace(ds.ports["a"], host="h1")})
    st3 = {s.id: s for s in compile_host(ds3, local2, facts_for("h1"), "h1").statuses}
    assert st3["f1"] == replace(st3["f1"], status="ERROR", reason="source port not on this host")
    # all good on h2 (destination side): service and flow ACTIVE
    assert {s.status for s in cloud.compile("h2").statuses} == {"ACTIVE"}


def test_idempotent_and_small_changes_touch_few_flows() -> None:
    c = Cloud()
    c.port("mon", "h1", "netA", 5, "fa:16:3e:00:00:01")
    for i in range(100):
        c.service(f"s{i}", "mon", 3900 + (i % 90)) if i < 90 else None
    for i in range(300):
        c.port(f"p{i}", "h1", "netA" if i % 2 else "netB", 100 + i, f"fa:16:3e:00:01:{i:02x}"[:17])
        c.flow(f"f{i}", f"s{i % 90}", f"p{i}", ("IN", "OUT", "BOTH")[i % 3])
    one = c.compile("h1").flows
    assert one == c.compile("h1").flows
    c.flows = c.flows[:-3]  # 1% change
    two = c.compile("h1").flows
    total = sum(len(v) for v in one.values())
    touched = sum(len(d) + len(a) for d, a in (diff(one[b], two[b]) for b in one))
    assert 0 < touched < total * 0.05, (touched, total)


def test_vlan_masks_cover_exactly() -> None:
    for lo, hi in ((0, 4095), (10, 20), (1, 4094), (7, 7), (100, 355)):
        masks = vlan_ranges_to_masks([(lo, hi)])
        covered = {v for v in range(4096) if any((v & m) == val for val, m in masks)}
        assert covered == set(range(lo, hi + 1))
    assert parse_vlan_filter("30,10-20,15-25") == [(10, 25), (30, 30)]
    with pytest.raises(ValueError):
        parse_vlan_filter("20-10")


def test_flow_text_round_trip() -> None:
    from taas.agent.ovs.flows import parse_dump_line
    f = Flow.raw(211, 110, {"reg12": "0x2", "in_port": "5", "dl_dst": "01:00:00:00:00:00/"
                             "01:00:00:00:00:00"}, "drop")
    line = (" cookie=0x7aa5000000000001, table=211, priority=110,reg12=0x2,in_port=5,"
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=drop")
    assert parse_dump_line(line) == (0x7AA5000000000001, f)
    assert f.add_line().startswith("add cookie=0x7aa5000000000001,table=211,priority=110,")


def test_each_matching_tap_flow_delivers_its_copy(cloud: Cloud) -> None:
    # a and b both mirrored IN into s1: a broadcast from mon reaches both, so two tap flows
    # match it and each delivers a copy; a's own broadcast is delivered only to b: one copy.
    cloud.service("s1", "mon2", 3901)
    cloud.flow("f1", "s1", "a", "IN")
    cloud.flow("f2", "s1", "b", "IN")
    assert [o.port for o in copies(cloud.send_from("mon", Pkt("fa:16:3e:00:00:99", BCAST)))] == [
        13, 13]
    assert [o.port for o in copies(cloud.send_from("a", Pkt(A, BCAST)))] == [13]
    assert [o.port for o in copies(cloud.send_from("b", Pkt(B, MCAST)))] == [13]
    assert [o.port for o in copies(cloud.from_tunnel("h1", "netA", Pkt(R, BCAST)))] == [13, 13]


def test_in_ports_per_network_capped_with_error(cloud: Cloud,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from taas.agent.ovs import tables
    monkeypatch.setattr(tables, "MAX_IN_PORTS_PER_NETWORK", 1)
    cloud.service("s1", "mon2", 3901)
    cloud.flow("f1", "s1", "a", "IN")
    cloud.flow("f2", "s1", "b", "BOTH")
    st = {s.id: s for s in cloud.compile("h1").statuses}
    assert st["f1"].status == "ACTIVE"
    assert st["f2"].status == "ERROR" and "more than 1" in (st["f2"].reason or "")
    assert [o.port for o in copies(cloud.send_from("mon", Pkt("fa:16:3e:00:00:99", BCAST)))] == [
        13]
    assert copies(cloud.send_from("b", Pkt(B, R))) == []  # f2 is not half-installed


def _mirror_vlan_of(c, port: int) -> int:  # noqa: ANN001
    """The VLAN br-tap sends out of ``port`` (a tap mirror's tunnel port)."""
    (f,) = [f for f in c.flows[BR_TAP] if f.actions == f"pop_vlan,output:{port}"]
    return int(f.field("dl_vlan") or 0)


def test_tap_mirror_vlans_stable_when_a_lower_id_mirror_comes_and_goes(cloud: Cloud) -> None:
    # Bridges are applied independently: if mirror "m2" changed VLAN when "m1" (lower id)
    # appeared, m2's copies still tagged with its old VLAN would leave through m1's port.
    cloud.mirrors.append(TapMirrorState("m2", "p", "a", {"OUT": 102}, "192.0.2.9", "gre"))
    cloud.mirror_ports = {("m2", "OUT"): 8, ("m1", "OUT"): 7, ("m0", "OUT"): 6}
    ds, local = cloud.state("h1")
    f = facts_for("h1", cloud.mirror_ports)
    c1 = compile_host(ds, local, f, "h1")
    v2 = _mirror_vlan_of(c1, 8)
    cloud.mirrors.append(TapMirrorState("m1", "p", "b", {"OUT": 101}, "192.0.2.8", "gre"))
    ds, local = cloud.state("h1")
    c2 = compile_host(ds, local, f, "h1", mirror_vlans=c1.mirror_vlans)
    assert _mirror_vlan_of(c2, 8) == v2 and _mirror_vlan_of(c2, 7) != v2
    assert c2.mirror_vlans[("m2", "OUT")] == v2
    # m2 removed and m0 added in one change: m0 must not get m2's VLAN while m2's old flows
    # may still be on a bridge; m1 keeps its own.
    v1 = _mirror_vlan_of(c2, 7)
    cloud.mirrors = [m for m in cloud.mirrors if m.id != "m2"]
    cloud.mirrors.append(TapMirrorState("m0", "p", "mon", {"OUT": 100}, "192.0.2.7", "gre"))
    ds, local = cloud.state("h1")
    c3 = compile_host(ds, local, f, "h1", mirror_vlans=c2.mirror_vlans)
    assert _mirror_vlan_of(c3, 7) == v1
    assert _mirror_vlan_of(c3, 6) not in (v1, v2)
    # a VLAN seen on the switch with no known owner is not handed out either
    c4 = compile_host(ds, local, f, "h1", reserved_vlans={4000, 4001, 4002})
    assert min(c4.mirror_vlans.values()) == 4003
    assert copies(FakeHost(c3.flows, f).send(BR_INT, 11, Pkt(B, A))) == [Out(BR_TAP, 7, Pkt(B, A))]


def test_taas_id_in_the_mirror_vlan_range_is_an_error_not_remapped(cloud: Cloud) -> None:
    cloud.service("s1", "mon", 4000)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.mirrors.append(TapMirrorState("m1", "p", "b", {"OUT": 101}, "192.0.2.9", "gre"))
    cloud.mirror_ports = {("m1", "OUT"): 7}
    c = cloud.compile("h1")
    st = {s.id: s for s in c.statuses}
    assert st["s1"].status == "ERROR" and "4000" in (st["s1"].reason or "")
    assert st["f1"].status == "ERROR" and st["m1"].status == "ACTIVE"
    assert 4000 not in c.taas_ids
    assert not any(fl.table == 210 and "in_port=10" in fl.match for fl in c.flows[BR_INT])
    assert copies(cloud.send_from("b", Pkt(B, A))) == [Out(BR_TAP, 7, Pkt(B, A))]


def _set_vlan(cloud: Cloud, pid: str, vlan: int | None) -> None:
    h, p, net = cloud.ports[pid]
    cloud.ports[pid] = (h, replace(p, local_vlan=vlan), net)


@pytest.mark.parametrize("dead", [4095, None, 0])
def test_dead_ports_are_never_hooked_nor_a_network(cloud: Cloud, dead: int | None) -> None:
    # a (netA) and x (netB) are both dead: sharing the dead tag does not make them one
    # network, so x's broadcasts must not reach a's IN service, nor be forced into a hook.
    _set_vlan(cloud, "a", dead)
    _set_vlan(cloud, "x", dead)
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "BOTH")
    cloud.mirrors.append(TapMirrorState("m1", "p", "a", {"IN": 101}, "192.0.2.9", "gre"))
    cloud.mirror_ports = {("m1", "IN"): 7}
    c = cloud.compile("h1")
    st = {s.id: s for s in c.statuses}
    assert st["s1"].status == "ACTIVE"
    for rid in ("f1", "m1"):
        assert st[rid].status == "ERROR"
        assert "port is not wired to its network (dead VLAN)" in (st[rid].reason or "")
    for pid in ("a", "x"):
        ofport = cloud.ports[pid][1].ofport
        assert not any(f"in_port={ofport}" in fl.match for fl in c.flows[BR_INT])
    for pkt in (Pkt(X, BCAST), Pkt(X, A)):
        assert cloud.send_from("x", pkt) == [Out("NORMAL", BR_INT, pkt)]
    assert copies(cloud.send_from("a", Pkt(A, BCAST))) == []


def test_dead_monitor_port_is_an_error(cloud: Cloud) -> None:
    _set_vlan(cloud, "mon", 4095)
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "OUT")
    st = {s.id: s for s in cloud.compile("h1").statuses}
    assert st["s1"].status == st["f1"].status == "ERROR"
    assert "not wired to its network" in (st["s1"].reason or "")
    assert copies(cloud.send_from("a", Pkt(A, B))) == []


def test_ports_of_different_networks_sharing_a_local_vlan_are_errors(cloud: Cloud) -> None:
    _set_vlan(cloud, "x", 1)  # x is in netB, but carries netA's local VLAN on h1
    cloud.service("s1", "mon", 3901)
    cloud.flow("f1", "s1", "a", "IN")
    cloud.flow("f2", "s1", "x", "OUT")
    cloud.port("c", "h1", "netB", 15, "fa:16:3e:00:00:0d")
    cloud.service("s2", "mon2", 3902)
    cloud.flow("f3", "s2", "c", "OUT")  # netB's own port on netB's VLAN: fine
    st = {s.id: s for s in cloud.compile("h1").statuses}
    # every port named in VLAN 1 (a, mon: netA; x: netB) is suspect, so is s1 (monitor mon)
    assert st["f1"].status == st["f2"].status == st["s1"].status == "ERROR"
    assert "another network" in (st["f1"].reason or "")
    assert st["f3"].status == st["s2"].status == "ACTIVE"
    assert copies(cloud.send_from("x", Pkt(X, BCAST))) == []
    assert copies(cloud.send_from("b", Pkt(B, BCAST))) == []
    c = Pkt("fa:16:3e:00:00:0d", BCAST)
    assert copies(cloud.send_from("c", c)) == [Out(BR_INT, 13, c)]
