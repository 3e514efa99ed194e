"""Flow values in the canonical text form that ``ovs-ofctl dump-flows`` prints back.

OVS rewrites what it is given (``mod_vlan_vid`` becomes ``push_vlan``+``set_field``, numbers
become hex, MACs lower case, ``vlan_tci=0x100a/0x1fff`` becomes ``dl_vlan=10``). The compiler
therefore writes every flow in the dumped form, and flows are compared as parsed values (match
fields as a set), so that a diff of unchanged state is empty.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from taas.agent.ovs.tables import COOKIE


class Flow(NamedTuple):
    """One OpenFlow flow: table, priority, match fields (sorted ``k=v`` tokens), actions.

    A tuple, so that hashing and comparing tens of thousands of them in a diff runs in C.
    """

    table: int
    priority: int
    match: tuple[str, ...]
    actions: str

    @classmethod
    def make(cls, table: int, priority: int, match: dict[str, str] | None, actions: str) -> Flow:
        tokens = tuple(sorted(f"{k}={v}" for k, v in (match or {}).items()))
        return cls(table, priority, tokens, actions)

    def spec(self) -> str:
        """The flow without actions, as ovs-ofctl takes it (for ``delete_strict``).

        No cookie: OVS resolves a strict delete with a cookie mask by walking every rule of
        that cookie (all of ours: quadratic, minutes for 10,000s of flows), without one by an
        exact classifier lookup. Table, priority and match identify the one flow, which the
        driver has just read back with our cookie.
        """
        parts = [f"table={self.table}", f"priority={self.priority}"]
        return ",".join(parts + list(self.match))

    def add_line(self) -> str:
        parts = [f"cookie={COOKIE:#x}", f"table={self.table}", f"priority={self.priority}"]
        return "add " + ",".join(parts + list(self.match)) + f",actions={self.actions}"

    def delete_line(self) -> str:
        return "delete_strict " + self.spec()

    def field(self, name: str) -> str | None:
        for tok in self.match:
            k, _, v = tok.partition("=")
            if k == name:
                return v
        return None


_LINE = re.compile(r"^\s*(?P<head>.*?)\s*actions=(?P<actions>.*)$")


def parse_dump_line(line: str) -> tuple[int, Flow] | None:
    """Parse one line of ``ovs-ofctl --no-stats dump-flows``; returns (cookie, flow)."""
    m = _LINE.match(line)
    if not m:
        return None
    cookie, table, priority = 0, 0, 32768
    match: list[str] = []
    for raw in m.group("head").replace(", ", ",").split(","):
        tok = raw.strip()
        if not tok:
            continue
        k, _, v = tok.partition("=")
        if k == "cookie":
            cookie = int(v, 16)
        elif k == "table":
            table = int(v)
        elif k == "priority":
            priority = int(v)
        else:
            match.append(tok)
    return cookie, Flow(table, priority, tuple(sorted(match)), m.group("actions").strip())


# --- canonical spellings of the matches and actions taas uses --------------------------------


def vlan_vid_match(value: int, mask: int = 0xFFF) -> tuple[str, str]:
    """A match on the 802.1Q VLAN id (``value``/``mask`` over its 12 bits), as OVS prints it."""
    if mask == 0xFFF:
        return "dl_vlan", str(value)
    return "vlan_tci", f"{0x1000 | value:#06x}/{0x1000 | mask:#06x}"


def push_vlan(vid: int) -> str:
    return f"push_vlan:0x8100,set_field:{0x1000 | vid}->vlan_vid"


def set_reg(reg: str, value: int) -> str:
    return f"set_field:{value:#x}->{reg}"


def set_tun_id(vni: int) -> str:
    return f"set_field:{vni:#x}->tun_id"


def output(ofport: int) -> str:
    return f"output:{ofport}"


def resubmit(table: int) -> str:
    return f"resubmit(,{table})"


def clone(*actions: str) -> str:
    return "clone(" + ",".join(actions) + ")"


MULTICAST = "01:00:00:00:00:00/01:00:00:00:00:00"


def vlan_ranges_to_masks(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cover inclusive VLAN id ranges with (value, mask) prefixes over 12 bits."""
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        while lo <= hi:
            size = lo & -lo if lo else 0x1000
            while size > hi - lo + 1:
                size >>= 1
            out.append((lo, 0xFFF & ~(size - 1)))
            lo += size
    return out


def parse_vlan_filter(text: str | None) -> list[tuple[int, int]] | None:
    """``"10-20,30"`` -> [(10, 20), (30, 30)] (merged, sorted); None/empty -> None (no filter)."""
    if text is None or not text.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        a, b = int(lo), int(hi or lo)
        if not (0 <= a <= b <= 4095):
            raise ValueError(f"bad vlan_filter range {part!r}")
        ranges.append((a, b))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
