"""VLAN ids shared by the server and the agents, and the one ``vlan_filter`` parser.

Inside a hypervisor a mirrored copy carries its sink as a VLAN id (docs/pipeline.md): a tap
service's ``taas_id`` (handed out by the server) or, for a tap mirror direction, a local VLAN
chosen by the agent. The two ranges must never overlap, so both sides read them from here.
"""

from __future__ import annotations

import re

# taas_ids are 1 .. TAAS_ID_END - 1; the server's vlan_range_end may not exceed TAAS_ID_END.
TAAS_ID_END = 4000
# Local VLANs of tap mirror directions (agent-chosen, per host).
MIRROR_VLAN_FIRST = TAAS_ID_END
MIRROR_VLAN_LAST = 4094
# Neutron's dead VLAN: admin-down or unwired ports, and taas's patch-int-tap (never flooded).
DEAD_VLAN = 4095
# The highest VLAN id a tenant frame can carry (4095 is reserved by 802.1Q).
VLAN_ID_MAX = 4094

_VLAN_FILTER_RE = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*", re.ASCII)


class VlanFilterError(ValueError):
    """A ``vlan_filter`` that is not VLAN ids and ranges within 0..4094."""


def parse_vlan_filter(text: str | None) -> list[tuple[int, int]] | None:
    """``"10-20,30"`` -> ``[(10, 20), (30, 30)]`` (sorted, overlaps merged); None -> None.

    None means "every frame". Anything else must be ids and ``low-high`` ranges within
    0..4094, comma-separated, no spaces; else ``VlanFilterError`` says what is wrong.
    """
    if text is None:
        return None
    if not _VLAN_FILTER_RE.fullmatch(text):
        raise VlanFilterError(f"{text!r} is not VLAN ids and ranges like '10-20,30'")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        lo, hi = int(low), int(high or low)
        if hi > VLAN_ID_MAX:
            raise VlanFilterError(f"VLAN id {hi} is outside 0..{VLAN_ID_MAX}")
        if lo > hi:
            raise VlanFilterError(f"range {part} has its low end above its high end")
        ranges.append((lo, hi))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
