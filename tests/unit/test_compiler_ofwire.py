"""OpenFlow wire encoding of compiled flows, checked against ovs-ofctl's own decoder."""

from __future__ import annotations

import re
import subprocess

import pytest
from test_compiler import Cloud, cloud  # noqa: F401

from taas.agent.ovs import ofwire
from taas.agent.ovs.flows import Flow, parse_dump_line
from taas.agent.ovs.tables import COOKIE
from taas.common.desired_state import TapMirrorState

_PRINTED = re.compile(r"OFPT_FLOW_MOD \(OF1\.4\) \(xid=0x7\): (ADD|DEL_STRICT) "
                      r"(?:table:(\d+) )?(\S+?)(?: cookie:(0x[0-9a-f]+))? actions=(.*)$")


def ofp_print(msg: bytes) -> tuple[str, int, Flow]:
    """(command, cookie, flow) as ovs-ofctl decodes the message."""
    out = subprocess.run(["ovs-ofctl", "ofp-print", msg.hex()], capture_output=True, text=True,
                         check=True).stdout.strip()
    m = _PRINTED.match(out)
    assert m, out
    cmd, table, head, cookie, actions = m.groups()
    parsed = parse_dump_line(f"table={table or 0}, {head} actions={actions}")
    assert parsed is not None
    return cmd, int(cookie or "0", 16), parsed[1]


def rich_flows(cloud: Cloud) -> set[Flow]:  # noqa: F811
    """Every kind of flow the compiler writes: local/remote services, OUT/IN/BOTH,
    vlan_filter pieces, a tap mirror, tunnels."""
    cloud.service("s1", "mon", 3901)
    cloud.service("s2", "rmon", 3902)
    cloud.flow("f1", "s1", "a", "OUT")
    cloud.flow("f2", "s1", "b", "IN", "10-20,4000")
    cloud.flow("f3", "s2", "a", "BOTH", "7")
    cloud.flow("f4", "s2", "r", "IN")
    cloud.mirrors.append(TapMirrorState("m1", "p", "x", {"IN": 101, "OUT": 102}, "192.0.2.9",
                                        "gre"))
    cloud.mirror_ports = {("m1", "IN"): 7, ("m1", "OUT"): 8}
    flows: set[Flow] = set()
    for host in ("h1", "h2"):
        for fs in cloud.compile(host).flows.values():
            flows |= fs
    return flows


def test_limit_flows_encode_to_what_ovs_decodes() -> None:
    """Meters (instruction), pkt_mark matches and writes, truncating outputs: every flow of
    the probe's host that uses them."""
    from taas.agent.ovs.probe import probe_source

    flows = {f for fs in probe_source().flows.values() for f in fs
             if f.table != 213  # (the FILTER table's matches are ovs-ofctl's, as before)
             and ("meter:" in f.actions or "pkt_mark" in f.actions or "max_len" in f.actions
             or any(t.startswith("pkt_mark") for t in f.match))}
    assert any(f.actions.startswith("meter:") for f in flows)
    assert any("max_len" in f.actions for f in flows)
    for f in flows:
        cmd, cookie, back = ofp_print(ofwire.encode_flow_mod(f, ofwire.OFPFC_ADD, COOKIE, 7))
        assert (cmd, cookie, back) == ("ADD", COOKIE, f)


def test_every_compiled_flow_encodes_to_what_ovs_decodes(cloud: Cloud) -> None:  # noqa: F811
    flows = rich_flows(cloud)
    kinds = {(f.table, f.priority) for f in flows}
    assert {(210, 101), (211, 101), (212, 110), (0, 320), (0, 300)} <= kinds
    assert any("vlan_tci" in t for f in flows for t in f.match)
    assert any("tun_id" in f.actions for f in flows) and any("clone(" in f.actions for f in flows)
    for f in flows:
        cmd, cookie, back = ofp_print(ofwire.encode_flow_mod(f, ofwire.OFPFC_ADD, COOKIE, 7))
        assert (cmd, cookie, back) == ("ADD", COOKIE, f)
        cmd, cookie, back = ofp_print(
            ofwire.encode_flow_mod(f, ofwire.OFPFC_DELETE_STRICT, COOKIE, 7))
        # a strict delete carries no cookie (exact classifier lookup; see Flow.spec)
        assert (cmd, cookie, back) == ("DEL_STRICT", 0, f._replace(actions="drop"))


def test_bundle_messages_decode() -> None:
    f = Flow.raw(210, 100, {"in_port": "5"}, "clone(push_vlan:0x8100,set_field:4097->vlan_vid,"
                  "output:1)")
    msg = ofwire.bundle_add(9, ofwire.OFPBF_ATOMIC | ofwire.OFPBF_ORDERED,
                            ofwire.encode_flow_mod(f, ofwire.OFPFC_ADD, COOKIE, 7))
    out = subprocess.run(["ovs-ofctl", "ofp-print", msg.hex()], capture_output=True, text=True,
                         check=True).stdout
    assert "bundle_id=0x9 flags=atomic ordered" in out
    assert "ADD table:210 priority=100,in_port=5" in out
    ctl = ofwire.bundle_control(9, ofwire.OFPBCT_COMMIT_REQUEST, ofwire.OFPBF_ATOMIC, 3)
    out = subprocess.run(["ovs-ofctl", "ofp-print", ctl.hex()], capture_output=True, text=True,
                         check=True).stdout
    assert "bundle_id=0x9 type=COMMIT_REQUEST flags=atomic" in out


@pytest.mark.parametrize("flow", [
    Flow.raw(0, 300, {"in_port": "5"}, "ct(commit),NORMAL"),  # action outside the vocabulary
    Flow.raw(0, 300, {"nw_src": "10.0.0.1"}, "drop"),  # match field outside it
])
def test_unknown_vocabulary_is_refused_for_the_ofctl_fallback(flow: Flow) -> None:
    with pytest.raises(ofwire.Unsupported):
        ofwire.encode_flow_mod(flow, ofwire.OFPFC_ADD, COOKIE, 1)


def test_split_actions_respects_parentheses() -> None:
    assert ofwire.split_actions("clone(a,b(c,d)),e, f") == ["clone(a,b(c,d))", "e", "f"]


def test_hello_must_admit_openflow_14() -> None:
    """A bridge restricted to older versions is named at connect time (bundles need 1.4)."""
    import struct

    from taas.agent.ovs.ofconn import _speaks_14

    bitmap = struct.Struct("!HHI")
    assert _speaks_14(0x06, bitmap.pack(1, 8, (1 << 5) | (1 << 6)))
    assert _speaks_14(0x05, b"")  # no bitmap: the header version decides
    assert not _speaks_14(0x04, b"")  # e.g. protocols=OpenFlow13 on the bridge
    assert not _speaks_14(0x06, bitmap.pack(1, 8, 1 << 6))  # 1.5 only
