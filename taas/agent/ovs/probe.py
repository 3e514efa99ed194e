"""The spelling probe's vocabulary: a synthetic host whose compile uses every table, priority,
match field and action the compiler writes. The driver writes it to an inert table at start-up
and reads it back, to learn whether OVS dumps flows exactly as the compiler spells them."""

from __future__ import annotations

from taas.agent.ovs import tables as T
from taas.agent.ovs.compile import BridgeFacts, Compiled, compile_host
from taas.agent.ovs.flows import Flow
from taas.agent.ports import LocalPort
from taas.common.desired_state import (
    DesiredState,
    FilterRule,
    PortFacts,
    TapFilterState,
    TapFlowState,
    TapMirrorState,
    TapServiceState,
)


def _probe_rule(priority: int, action: str, **kw: str) -> FilterRule:
    return FilterRule(priority, action, **kw)  # type: ignore[arg-type]


# Every FILTER match field and the extreme rule priorities.
_PROBE_FILTER = TapFilterState("flt", "mirror", (
    _probe_rule(1, "skip", direction="OUT", protocol="tcp", destination_port_range="22"),
    _probe_rule(2, "mirror", protocol="udp", source_port_range="1000-1999",
                destination_ip_prefix="10.1.0.0/16"),
    _probe_rule(3, "skip", protocol="icmp", source_ip_prefix="192.0.2.7/32"),
    _probe_rule(4, "mirror", protocol="icmpv6", destination_ip_prefix="2001:db8::/64"),
    _probe_rule(5, "skip", ethertype="IPv6", source_ip_prefix="2001:db8:1::/48"),
    _probe_rule(6, "mirror", protocol="47"),
    _probe_rule(7, "skip", protocol="132"),
    _probe_rule(8, "mirror", protocol="udp", destination_port_range="53"),
    _probe_rule(1000, "mirror", direction="IN"),
))


def probe_source(continuation: str = "NORMAL") -> Compiled:
    """A small synthetic host whose compile uses every table, priority, match field and
    action the compiler writes (local and remote services, IN/OUT/BOTH, exact and prefix
    vlan_filters, a tap mirror, a tunnel hook) with the given continuation."""
    mac = "fa:16:3e:00:00:{:02x}".format
    ports = {f"p{i}": LocalPort(f"p{i}", 10 + i, 1, mac(i), f"p{i}") for i in range(4)}
    facts = {pid: PortFacts(pid, "net", p.mac, 100, "probe") for pid, p in ports.items()}
    desired = DesiredState(
        "probe", 0,
        (TapServiceState("s-local", "", "p0", 3001, 16_003_001, "probe", "192.0.2.1",
                         max_pps=1000, max_kbps=8000),
         TapServiceState("s-remote", "", "remote", 3002, 16_003_002, "other", "192.0.2.2"),
         TapServiceState("s-local2", "", "p3", 3003, 16_003_003, "probe", "192.0.2.1",
                         max_kbps=8000)),
        (TapFlowState("f-out", "", "s-local", "p1", "OUT", "10-13,20", snaplen=128,
                      max_pps=100, max_kbps=800),
         TapFlowState("f-in", "", "s-remote", "p1", "IN", None, snaplen=96, max_pps=100),
         TapFlowState("f-both", "", "s-remote", "p2", "BOTH", "6-7,9"),
         TapFlowState("f-in-filtered", "", "s-local", "p0", "IN", "30"),
         TapFlowState("f-tap-filter", "", "s-remote", "p2", "BOTH", None, _PROBE_FILTER,
                      snaplen=200),
         TapFlowState("f-local2", "", "s-local2", "p0", "OUT", None, snaplen=64)),
        (TapMirrorState("m", "", "p2", {"IN": 5}, "192.0.2.9", "gre"),
         TapMirrorState("m-limited", "", "p0", {"OUT": 6}, "192.0.2.9", "erspanv1", snaplen=128,
                        max_pps=10, max_kbps=80)),
        facts)
    bridge = BridgeFacts(int_patch_tap=1, tap_patch_int=1, tap_patch_tun=2, tun_patch_tap=1,
                         int_patch_tun=2, vxlan_ports={"192.0.2.2": 3},
                         mirror_ports={("m", "IN"): 4, ("m-limited", "OUT"): 5})
    return compile_host(desired, ports, bridge, continuation=continuation)


def probe_flows(continuation: str = "NORMAL") -> list[Flow]:
    """``probe_source``'s flows, moved into PROBE_TABLE at distinct priorities (1, 2, ...).

    Without the flows that use a meter: OVS refuses a flow whose meter does not exist on the
    bridge (the meters exist on br-int and br-tap only while a limit uses them); their other
    matches and actions occur in flows without one, and ``meter:N`` is spelled as OVS dumps
    it (tests/dataplane/test_limits.py: a no-op sync changes nothing)."""
    flows = sorted({f for fs in probe_source(continuation).flows.values() for f in fs
                    if "meter:" not in f.actions})
    return [f._replace(table=T.PROBE_TABLE, priority=i) for i, f in enumerate(flows, start=1)]
