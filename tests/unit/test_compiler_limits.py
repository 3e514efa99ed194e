"""Rate limits and truncation in the compiler and the contract (pure; the switch's behaviour
is tests/dataplane/test_limits.py)."""

from __future__ import annotations

import re

import pytest

from taas.agent.ovs import meters as M
from taas.agent.ovs import tables as T
from taas.agent.ovs.probe import probe_source
from taas.common.desired_state import DesiredState, TapFlowState, TapServiceState

_METER = re.compile(r"meter:(\d+)")


def test_meters_only_where_only_copies_pass() -> None:
    """A meter sits first in a flow that a copy meets right after a patch port (br-tap table 0,
    br-int's delivery from patch-int-tap) or in the second-meter tables: never in the tables
    the tenant's frame goes through (hooks, OUT/IN/IN_BCAST/FILTER), where OVS inlines the
    copy's clone()."""
    compiled = probe_source()
    allowed = {("tap", 0), ("tap", 1), ("int", 0), ("int", T.INT_DELIVER_LIMIT.number)}
    seen = set()
    for br, flows in compiled.flows.items():
        for f in flows:
            ids = _METER.findall(f.actions)
            if not ids:
                continue
            seen.add((br, f.table))
            assert (br, f.table) in allowed, f
            assert f.actions.startswith("meter:") and len(ids) == 1, f
            if (br, f.table) == ("int", 0):
                assert f.priority in (T.PRIO_DELIVER, T.PRIO_DELIVER_TRUNC)
                assert f.field("in_port") == "1"  # patch-int-tap of the probe's facts
    assert seen == allowed  # the probe exercises them all
    # Compiled.meters lists exactly the meters the flows of each bridge use.
    for br in ("int", "tap", "tun"):
        used = {int(i) for f in compiled.flows[br] for i in _METER.findall(f.actions)}
        assert used == {m.meter_id for m in compiled.meters.get(br, ())}, br


def test_a_limited_tap_flow_marks_its_copies_and_br_tap_meters_them() -> None:
    compiled = probe_source()
    specs = M.meters_of(DesiredState("probe", 0))  # none
    assert specs == {}
    # f-out: snaplen 128, max_pps and max_kbps, local service s-local (taas_id 3001)
    tap = [f for f in compiled.flows["tap"] if "pkt_mark" in " ".join(f.match)]
    marks = {f.field("pkt_mark") for f in tap}
    assert all(m.endswith("/0xffff0000") for m in marks)
    keyed = [f for f in tap if f.field("dl_vlan") == "3001"]
    assert keyed and all(f.priority == T.PRIO_TAP_LIMIT for f in keyed)
    key = int(keyed[0].field("pkt_mark").split("/")[0], 16)  # type: ignore[union-attr]
    mark = key | 128
    sets = [f for f in compiled.flows["int"] if f"set_field:{mark:#x}->pkt_mark" in f.actions]
    assert sets, "the copies of f-out carry its key and snaplen"
    # the second meter, then the key cleared (the snaplen kept) and back to br-int
    (second,) = [f for f in compiled.flows["tap"]
                 if f.table == 1 and f.field("dl_vlan") == "3001"]
    assert second.actions.endswith(f"set_field:{128:#x}->pkt_mark,IN_PORT")
    # truncation at delivery for snaplen 128: max_len counts the popped taas VLAN
    (deliver,) = [f for f in compiled.flows["int"] if f.table == 0
                  and f.field("pkt_mark") == "0x80/0xffff" and f.field("dl_vlan") == "3001"]
    assert deliver.actions.endswith("max_len=132)") or "resubmit(,215)" in deliver.actions


def test_remote_truncation_clears_the_mark_before_the_vxlan_output() -> None:
    compiled = probe_source()
    trunc = [f for f in compiled.flows["tun"] if f.priority == T.PRIO_TUN_TRUNC]
    assert {f.field("pkt_mark") for f in trunc} == {"0x60/0xffff", "0xc8/0xffff"}  # 96, 200
    for f in trunc:
        n = int(f.field("pkt_mark").split("/")[0], 16)  # type: ignore[union-attr]
        assert f.actions.startswith("pop_vlan,set_field:0->pkt_mark,set_field:")
        assert f.actions.endswith(f"max_len={n + 4})")


def _limited(n: int) -> DesiredState:
    flows = tuple(TapFlowState(f"f{i}", "p", "s", f"port{i}", "OUT", None, max_pps=10,
                               max_kbps=20) for i in range(n))
    return DesiredState("h", 1, (TapServiceState("s", "p", "mon", 5, 5, "h", "ip",
                                                 max_pps=7),), flows)


def test_meter_ids_are_deterministic_in_range_and_collisions_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = M.meter_ids(_limited(50))
    assert len(ids) == 101 and len(set(ids.values())) == 101
    assert all(M.METER_FIRST <= i <= M.METER_LAST for i in ids.values())
    assert M.meter_ids(_limited(50)) == ids  # a restart computes the same ids
    # A resource keeps its ids when others come and go (unless they collide).
    fewer = M.meter_ids(_limited(10))
    assert all(ids[k] == v for k, v in fewer.items())
    per = M.resource_meters(_limited(3))
    assert per[("tap_flow", "f1", None)] == (ids[("tap_flow", "f1", None, "pktps")],
                                             ids[("tap_flow", "f1", None, "kbps")])
    pps, kbps = per[("tap_flow", "f1", None)]
    assert M.dropped({pps: M.MeterStats(pps, 9, 4, 400, 1.0),
                      kbps: M.MeterStats(kbps, 5, 1, 100, 1.0)},
                     per[("tap_flow", "f1", None)]) == 5
    monkeypatch.setattr(M, "_hash", lambda key: 7)  # everything collides
    clash = M.meter_ids(_limited(3))
    assert sorted(clash.values()) == list(range(M.METER_FIRST + 7, M.METER_FIRST + 14))


def test_bursts() -> None:
    assert M.burst_size("pktps", 1000) == 100 and M.burst_size("pktps", 5) == 10
    assert M.burst_size("kbps", 100_000) == 10_000 and M.burst_size("kbps", 8) == 128


@pytest.mark.parametrize("kw,reason", [
    ({"snaplen": 63}, "snaplen 63 is outside 64-65535"),
    ({"max_pps": 0}, "max_pps 0 is not a positive"),
    ({"max_kbps": 2**32}, "max_kbps 4294967296"),
])
def test_limits_the_server_should_have_refused_are_an_error_status(
        kw: dict[str, int], reason: str) -> None:
    from test_compiler import Cloud

    c = Cloud()
    c.port("a", "h1", "netA", 10, "fa:16:3e:00:00:0a")
    c.port("mon", "h1", "netA", 12, "fa:16:3e:00:00:99")
    c.service("s1", "mon", 3901)
    c.flows.append(TapFlowState("f1", "p", "s1", "a", "OUT", None, **kw))
    st = {s.id: s for s in c.compile("h1").statuses}
    assert st["f1"].status == "ERROR" and reason in (st["f1"].reason or "")
    assert st["s1"].status == "ACTIVE"


def test_the_contract_omits_unset_limits_and_reads_them_back() -> None:
    ds = _limited(1)
    d = ds.to_dict()
    assert "snaplen" not in d["tap_flows"][0] and d["tap_flows"][0]["max_pps"] == 10
    assert "max_kbps" not in d["tap_services"][0]
    plain = DesiredState("h", 1, (TapServiceState("s", "p", "m", 5, 5, "h", "ip"),),
                         (TapFlowState("f", "p", "s", "x", "IN", None),))
    pd = plain.to_dict()
    assert set(pd["tap_flows"][0]) == {"id", "project_id", "tap_service_id", "source_port",
                                       "direction", "vlan_filter"}  # what be100a8 knows
    assert DesiredState.from_dict(d) == ds
