"""Reading the copy VLANs back from flows: the inverse of the compiler's phases that write
them (``held_vlans`` of a dump; the driver's start-up recovery and the server's taas_id
reuse rely on it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from taas.agent.ovs import tables as T
from taas.agent.ovs.flows import Flow
from taas.agent.ovs.tables import BR_INT, BR_TAP, BR_TUN

__all__ = ["copy_vlans", "held_taas_ids", "held_vlans"]

_SET_VID = re.compile(r"set_field:(\d+)->vlan_vid")


def copy_vlans(br: str, f: Flow) -> set[int]:
    """The copy VLANs (taas_ids, tap mirror VLANs) a taas flow of bridge ``br`` pushes or
    matches: what ``_services``, ``_tap_mirror_rules`` and ``_remote_paths`` write. Not the VM
    tags of vlan_filter pieces (OUT/IN tables) nor the tenant local VLANs of br-int's
    patch-tun hooks: only the matches of copies coming from the taas patch ports.

    tests/unit/test_readback.py compiles states, reads their flows back as text and checks
    that this finds exactly the compiled taas_ids and mirror VLANs.
    """
    if f.table == T.PROBE_TABLE:
        return set()  # the spelling probe's synthetic flows (left over if a probe broke off)
    out = {int(m.group(1)) & 0xFFF for m in _SET_VID.finditer(f.actions)}
    v = f.field("dl_vlan")
    if v is not None and f.table == 0 and (
            br == BR_TAP
            or (br == BR_INT and f.priority in (T.PRIO_DELIVER, T.PRIO_DELIVER_TRUNC))
            or (br == BR_TUN and f.priority in (T.PRIO_TUN, T.PRIO_TUN_TRUNC))):
        out.add(int(v))
    return out


def held_vlans(flows: Mapping[str, Iterable[Flow]]) -> set[int]:
    """Every copy VLAN the flows of each bridge hold (``copy_vlans`` of each)."""
    return {v for br, fs in flows.items() for f in fs for v in copy_vlans(br, f)}


def held_taas_ids(flows: Mapping[str, Iterable[Flow]]) -> tuple[int, ...]:
    """The taas_ids among them (sorted); the rest are tap mirror VLANs."""
    return tuple(sorted(v for v in held_vlans(flows) if 1 <= v < T.MIRROR_VLAN_FIRST))
