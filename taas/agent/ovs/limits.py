"""The compile phases of the rate limits and truncation (docs/pipeline.md, "Rate limits" and
"Truncation"): a rate-limited tap flow's key and br-tap meters, and the delivery of each local
tap service through its meters and per-snaplen truncating outputs. Called by
``compile.compile_host`` with its build state (flows, statuses, meters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from taas.agent.ovs import tables as T
from taas.agent.ovs.flows import mark_match, output, output_trunc, set_mark
from taas.agent.ovs.meters import limit_keys
from taas.agent.ovs.tables import BR_INT, BR_TAP
from taas.agent.ports import LocalPort
from taas.common.desired_state import DesiredState

if TYPE_CHECKING:
    from taas.agent.ovs.compile import _Build, _Tap

__all__ = ["deliveries", "flow_limits"]


def flow_limits(b: _Build, desired: DesiredState, taps: list[_Tap],
                 remote_path: Mapping[int, tuple[int, int]]) -> list[_Tap]:
    """Rate-limited tap flows: a key each (numbered in tap flow id order), carried in the
    copy's pkt_mark to br-tap, whose flow for (sink, key) passes it through the flow's meters
    and clears the key (the snaplen bits stay for the exit), then forwards it as the sink's
    flow does. A copy whose key br-tap does not know (yet) is forwarded unmetered."""
    limited = {f.id for f in desired.tap_flows if f.max_pps or f.max_kbps}
    keys: dict[str, int] = {}
    for rid in sorted({t.resource[1] for t in taps if t.resource[1] in limited}):
        if len(keys) < T.MAX_MARK_KEY:
            keys[rid] = len(keys) + 1
    out: list[_Tap] = []
    f = b.facts
    for tap in taps:
        key = keys.get(tap.resource[1])
        if key is None:
            out.append(tap)
            if tap.resource[1] in limited:  # beyond 65,535 limited tap flows on one host
                b.statuses = [replace(st, status="ERROR",
                                      reason="too many rate-limited tap flows on this host")
                              if st.id == tap.resource[1] else st for st in b.statuses]
            continue
        mark = key << T.MARK_KEY_SHIFT | tap.snaplen
        out.append(replace(tap, mark=mark))
        fwd = output(f.tap_patch_tun) if tap.sink in remote_path else "IN_PORT"
        b.limited(BR_TAP, T.TAP_CLASSIFY, T.TAP_LIMIT, T.PRIO_TAP_LIMIT,
                  {"in_port": str(f.tap_patch_int), "dl_vlan": str(tap.sink),
                   "pkt_mark": mark_match(key << T.MARK_KEY_SHIFT, T.MARK_KEY_MASK)},
                  limit_keys("tap_flow", tap.resource[1]), f"{set_mark(tap.snaplen)},{fwd}")
    return [t for t in out if t.resource[1] not in limited or t.resource[1] in keys]


def deliveries(b: _Build, desired: DesiredState, ports: Mapping[str, LocalPort], host: str,
                service_err: Mapping[str, str], taps: list[_Tap]) -> None:
    """br-int's delivery of each local service's copies to its monitor port: through the
    service's meters, and for each snaplen of its local sources' copies (pkt_mark's low
    bits) truncated at that output. Copies from other hosts come truncated by their source."""
    f = b.facts
    for s in desired.tap_services:
        if s.dest_host != host or s.id in service_err:
            continue
        mon, t = ports[s.port_id], s.taas_id
        base = {"in_port": str(f.int_patch_tap), "dl_vlan": str(t)}
        keys = limit_keys("tap_service", s.id)
        b.count(b.limited(BR_INT, T.INT_CLASSIFY, T.INT_DELIVER_LIMIT, T.PRIO_DELIVER, base,
                          keys, f"pop_vlan,{output(mon.ofport)}"),
                "tap_service", s.id, "delivered")
        for n in sorted({tap.snaplen for tap in taps if tap.sink == t and tap.snaplen}):
            b.count(b.limited(BR_INT, T.INT_CLASSIFY, T.INT_DELIVER_LIMIT, T.PRIO_DELIVER_TRUNC,
                              {**base, "pkt_mark": mark_match(n, T.MARK_SNAPLEN_MASK)}, keys,
                              f"pop_vlan,{output_trunc(mon.ofport, n + T.POPPED_TAG)}"),
                    "tap_service", s.id, "delivered")
