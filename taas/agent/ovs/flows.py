"""Flow values in the canonical text form that ``ovs-ofctl dump-flows`` prints back.

OVS rewrites what it is given (``mod_vlan_vid`` becomes ``push_vlan``+``set_field``, numbers
become hex, MACs lower case, ``vlan_tci=0x100a/0x1fff`` becomes ``dl_vlan=10``). The compiler
therefore writes every flow in the dumped form, and flows are compared as parsed values (match
fields as a set), so that a diff of unchanged state is empty.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from taas.agent.ovs.tables import BRIDGES, COOKIE, Table


class PipelineError(ValueError):
    """A flow outside its table's declaration (a compiler bug)."""


# Action names at any depth ("clone(push_vlan:...,output:5)" -> clone, push_vlan, output), and
# resubmit targets.
# (not the argument names of "output(port=5,max_len=132)")
_ACTION_NAME = re.compile(r"(?:^|[,(])([A-Za-z_]+)(?![A-Za-z_=])")
_RESUBMIT = re.compile(r"resubmit\(,(\d+)\)")


def _check_actions(table: Table, actions: str) -> None:
    kinds = set(_ACTION_NAME.findall(actions))
    if not kinds <= table.actions:
        raise PipelineError(f"{table}: actions {sorted(kinds - table.actions)} not declared")
    if "resubmit" in kinds:
        targets = {int(t) for t in _RESUBMIT.findall(actions)}
        if not targets <= table.goto:
            raise PipelineError(f"{table}: resubmit to {sorted(targets - table.goto)} "
                                "not declared")


def _tokens(match: dict[str, str]) -> tuple[str, ...]:
    """Sorted ``k=v`` tokens; a shorthand such as ``tcp`` (value "") stands alone, as OVS
    prints it."""
    return tuple(sorted(f"{k}={v}" if v != "" else k for k, v in match.items()))


class Flow(NamedTuple):
    """One OpenFlow flow: table, priority, match fields (sorted ``k=v`` tokens), actions.

    A tuple, so that hashing and comparing tens of thousands of them in a diff runs in C.
    """

    table: int
    priority: int
    match: tuple[str, ...]
    actions: str

    @classmethod
    def make(cls, table: Table, priority: int, match: dict[str, str] | None, actions: str,
             continuation: str | None = None, *, checked: set[tuple[int, str]] | None = None
             ) -> Flow:
        """A flow of ``table``, checked against its declaration (``tables.Table``).

        ``continuation`` (the L2 agent's next step, configurable, so not ours to check) is
        appended to the checked actions, in tables declared to continue. ``checked``: (table,
        actions) pairs already found good (one compile repeats most action texts).
        """
        match = match or {}
        if not table.matches.issuperset(match):
            raise PipelineError(f"{table}: match on {sorted(match.keys() - table.matches)} "
                                "not declared")
        if priority not in table.priorities:
            raise PipelineError(f"{table}: priority {priority} not declared")
        key = (id(table), actions)
        if checked is None or key not in checked:
            _check_actions(table, actions)
            if checked is not None:
                checked.add(key)
        if continuation is not None:
            if not table.continues:
                raise PipelineError(f"{table}: no continuation declared")
            actions = f"{actions},{continuation}"
        return cls(table.number, priority, _tokens(match), actions)

    @classmethod
    def raw(cls, table: int, priority: int, match: dict[str, str] | None, actions: str) -> Flow:
        """A flow as any switch may hold it, unchecked (tests of the switch's own refusals)."""
        return cls(table, priority, _tokens(match or {}), actions)

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


def output_trunc(ofport: int, max_len: int) -> str:
    """Output at most ``max_len`` bytes of the frame (not to a patch port: OVS refuses)."""
    return f"output(port={ofport},max_len={max_len})"


def meter(meter_id: int) -> str:
    return f"meter:{meter_id}"


def set_mark(value: int) -> str:
    return f"set_field:{value:#x}->pkt_mark" if value else "set_field:0->pkt_mark"


def mark_match(value: int, mask: int) -> str:
    return f"{value:#x}/{mask:#x}"


def resubmit(table: Table) -> str:
    return f"resubmit(,{table.number})"


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


class FlowSet:
    """The flows of every bridge, each filed under its table's bridge."""

    def __init__(self) -> None:
        self.by_bridge: dict[str, set[Flow]] = {br: set() for br in BRIDGES}
        self._checked: set[tuple[int, str]] = set()  # (table, actions) found good

    def add(self, table: Table, priority: int, match: dict[str, str] | None, actions: str,
            continuation: str | None = None) -> Flow:
        flow = Flow.make(table, priority, match, actions, continuation, checked=self._checked)
        self.by_bridge[table.bridge].add(flow)
        return flow

    def frozen(self) -> dict[str, frozenset[Flow]]:
        return {br: frozenset(fs) for br, fs in self.by_bridge.items()}
