"""The declared pipeline: flows checked against their tables, copy VLANs read back from text."""

from __future__ import annotations

import pytest
from fakeof import FakeHost
from test_compiler import Cloud, facts_for

from taas.agent.ovs import tables as T
from taas.agent.ovs.compile import (
    BR_INT,
    BR_TAP,
    BR_TUN,
    held_taas_ids,
    held_vlans,
)
from taas.agent.ovs.flows import _ACTION_NAME, Flow, FlowSet, PipelineError, parse_dump_line
from taas.agent.ovs.probe import probe_flows, probe_source
from taas.common.desired_state import TapMirrorState


def rich_cloud() -> Cloud:
    """Local and remote services, every direction, vlan_filters over ids that look like
    taas_ids, tap mirrors, two networks (tenant local VLANs 1, 2, 11, 12)."""
    c = Cloud()
    c.port("a", "h1", "netA", 10, "fa:16:3e:00:00:0a")
    c.port("b", "h1", "netA", 11, "fa:16:3e:00:00:0b")
    c.port("mon", "h1", "netA", 12, "fa:16:3e:00:00:99")
    c.port("x", "h1", "netB", 14, "fa:16:3e:00:00:0c")
    c.port("r", "h2", "netA", 20, "fa:16:3e:00:00:0d")
    c.port("rmon", "h2", "netB", 21, "fa:16:3e:00:00:97")
    c.service("s1", "mon", 3901)
    c.service("s2", "rmon", 3902)
    c.service("s3", "rmon", 17)  # never used by a source on h1: no flow of it there
    c.flow("f1", "s1", "a", "OUT", "3901-3903,11")
    c.flow("f2", "s1", "b", "IN")
    c.flow("f3", "s2", "a", "BOTH", "3900")
    c.flow("f4", "s2", "x", "IN")
    c.flow("f5", "s1", "r", "OUT", "1-2")
    c.mirrors.append(TapMirrorState("m1", "p", "b", {"IN": 101, "OUT": 102}, "192.0.2.9",
                                    "gre"))
    c.mirror_ports = {("m1", "IN"): 7, ("m1", "OUT"): 8}
    return c


def as_dumped(flows: dict[str, frozenset[Flow]]) -> dict[str, set[Flow]]:
    """The flows as ``ovs-ofctl dump-flows`` prints them, parsed back."""
    out: dict[str, set[Flow]] = {}
    for br, fs in flows.items():
        lines = [f" cookie={T.COOKIE:#x}, table={f.table}, priority={f.priority},"
                 + ",".join(f.match) + f" actions={f.actions}" for f in fs]
        out[br] = {p[1] for p in map(parse_dump_line, lines) if p is not None}
    return out


@pytest.mark.parametrize("host", ["h1", "h2"])
def test_taas_ids_and_mirror_vlans_read_back_from_compiled_text(host: str) -> None:
    """compile -> text -> read back gives the compiled taas_ids and mirror VLANs, and nothing
    else (no vlan_filter tag, no tenant local VLAN): a change of a priority or a table in the
    compiler that the read-back does not follow fails here."""
    c = rich_cloud()
    compiled = c.compile(host)
    assert compiled.taas_ids  # the case is not empty
    dumped = as_dumped(compiled.flows)
    assert dumped == {br: set(fs) for br, fs in compiled.flows.items()}
    assert held_taas_ids(dumped) == compiled.taas_ids
    mirror = {v for v in held_vlans(dumped) if v >= T.MIRROR_VLAN_FIRST}
    assert mirror == (set(compiled.mirror_vlans.values()) if host == "h1" else set())


def test_every_compiled_flow_is_in_a_declared_table() -> None:
    c = rich_cloud()
    declared = {(t.bridge, t.number) for t in T.TABLES}
    for host in ("h1", "h2"):
        for br, fs in c.compile(host).flows.items():
            assert {(br, f.table) for f in fs} <= declared


@pytest.mark.parametrize("table,prio,match,actions,err", [
    (T.INT_OUT, T.PRIO_COPY, {"tun_id": "0x1"}, "drop", "match on"),
    (T.INT_OUT, 200, {"in_port": "1"}, "drop", "priority 200"),
    (T.TAP_CLASSIFY, T.PRIO_TAP, {"in_port": "1"}, "NORMAL", "actions"),
    (T.INT_IN, T.PRIO_COPY, {"reg12": "0x1"}, "resubmit(,210)", "resubmit to [210]"),
    (T.INT_OUT, T.PRIO_COPY, {"in_port": "1"}, "clone(ct(commit))", "actions ['commit', 'ct']"),
])
def test_flow_outside_its_table_declaration_is_refused(
        table: T.Table, prio: int, match: dict[str, str], actions: str, err: str) -> None:
    with pytest.raises(PipelineError, match=err.replace("[", r"\[").replace("(", r"\(")):
        Flow.make(table, prio, match, actions)


def test_continuation_only_where_declared() -> None:
    hook = Flow.make(T.INT_CLASSIFY, T.PRIO_HOOK, {"in_port": "5"},
                     "clone(set_field:0x1->reg12,resubmit(,210))", "resubmit(,60)")
    assert hook.actions.endswith(",resubmit(,60)")  # the L2 agent's tables are not ours
    with pytest.raises(PipelineError, match="continuation"):
        Flow.make(T.INT_OUT, T.PRIO_COPY, {"in_port": "5"}, "drop", "NORMAL")


def test_flowset_files_each_flow_under_its_tables_bridge() -> None:
    fs = FlowSet()
    fs.add(T.TUN_CLASSIFY, T.PRIO_TUN_DROP, {"in_port": "1"}, "drop")
    fs.add(T.CANARY[BR_TAP], 0, None, "drop")
    assert {br: len(v) for br, v in fs.frozen().items()} == {BR_INT: 0, BR_TAP: 1, BR_TUN: 1}


def test_fake_switch_refuses_overlapping_flows_of_one_priority() -> None:
    f = facts_for("h1")
    mac = Flow(211, 100, ("dl_dst=fa:16:3e:00:00:01", "reg12=0x1"), "drop")
    bcast = Flow(211, 100, ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "reg12=0x1"), "drop")
    other_net = Flow(211, 100, ("dl_dst=fa:16:3e:00:00:01", "reg12=0x2"), "drop")
    FakeHost({BR_INT: frozenset({mac, bcast, other_net})}, f)  # disjoint: accepted
    wild = Flow(211, 100, ("reg12=0x1",), "drop")
    with pytest.raises(AssertionError, match="overlapping"):
        FakeHost({BR_INT: frozenset({mac, wild})}, f)
    exact = Flow(210, 101, ("dl_vlan=10", "in_port=5"), "drop")
    prefix = Flow(210, 101, ("in_port=5", "vlan_tci=0x1008/0x1ff8"), "drop")  # VLANs 8-15
    with pytest.raises(AssertionError, match="overlapping"):
        FakeHost({BR_INT: frozenset({exact, prefix})}, f)


def test_probe_covers_every_declared_table_priority_match_and_action() -> None:
    flows = {(br, f) for br, fs in probe_source().flows.items() for f in fs}
    seen_prio = {(br, f.table, f.priority) for br, f in flows}
    # FILTER declares a range (rule priorities 1-1000): the probe uses its ends and default.
    ends = {T.PRIO_FILTER_DEFAULT, T.PRIO_FILTER_RULE - 1,
            T.PRIO_FILTER_RULE - T.MAX_FILTER_RULE_PRIORITY}
    filter_prio = {p for br, tb, p in seen_prio if tb == T.INT_FILTER.number}
    assert ends <= filter_prio <= T.INT_FILTER.priorities
    assert seen_prio == {(t.bridge, t.number, p) for t in T.TABLES for p in t.priorities
                         if t is not T.INT_FILTER or p in filter_prio}
    for t in T.TABLES:
        mine = [f for br, f in flows if (br, f.table) == (t.bridge, t.number)]
        fields = {tok.partition("=")[0] for f in mine for tok in f.match}
        assert fields == t.matches, t
        actions = {a for f in mine for a in _ACTION_NAME.findall(f.actions)} - {"NORMAL"}
        assert actions == t.actions, t
    assert len(probe_flows()) == len({f for _, f in flows if "meter:" not in f.actions})
    assert all(f.table == T.PROBE_TABLE for f in probe_flows())
