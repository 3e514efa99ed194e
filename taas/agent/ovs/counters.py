"""Counters of the taas resources, read from the OpenFlow statistics of the flows that count.

Which flows count for what is the compiler's (``Compiled.counted``, docs/pipeline.md
"Counters"): a tap flow's copy flows on its source host (its FILTER flows when it has a tap
filter: mirror rules count ``mirrored``, skip rules ``filtered``), a tap service's delivery
flow on its destination host, a tap mirror direction's exit on br-tap. Each flow is a *slot*
(a stable name for it on this host); its raw ``n_packets``/``n_bytes`` come with an *epoch*,
the time it was installed (from its ``duration``), so the server can tell growth of the same
flow from a re-installed one whose counters restarted at 0. Stateless across agent restarts:
a restarted agent reads the same flows, with the same epochs, and the server adds only growth.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from taas.agent.ovs import tool
from taas.agent.ovs.flows import Flow, parse_dump_line
from taas.agent.ovs.meters import MeterStats
from taas.agent.ovs.tables import COOKIE
from taas.common.desired_state import SAME_EPOCH_MS, CounterSlot

OF_VERSION = "OpenFlow14"
_STAT = re.compile(r"^(duration|n_packets|n_bytes|idle_age|hard_age)=(\S+?)s?$")

# (resource kind, id, counter, tap mirror direction or None), as compile.Counted
Counted = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class FlowStats:
    flow: Flow
    packets: int
    bytes: int
    duration: float  # seconds since the flow was installed


def parse_stats_line(line: str) -> tuple[int, FlowStats] | None:
    """One line of ``ovs-ofctl dump-flows`` *with* statistics -> (cookie, stats)."""
    head, sep, actions = line.partition(" actions=")
    if not sep:
        return None
    stats: dict[str, str] = {}
    kept = []
    for tok in head.replace(", ", ",").split(","):
        m = _STAT.match(tok.strip())
        if m:
            stats[m.group(1)] = m.group(2)
        else:
            kept.append(tok)
    parsed = parse_dump_line(",".join(kept) + " actions=" + actions)
    if parsed is None or "n_packets" not in stats:
        return None
    return parsed[0], FlowStats(parsed[1], int(stats["n_packets"]), int(stats["n_bytes"]),
                                float(stats.get("duration", "0")))


def dump_stats(target: str) -> list[FlowStats]:
    """The taas flows of a bridge (``unix:<mgmt socket>``) with their statistics."""
    out = tool.run(["ovs-ofctl", "--no-names", "-O", OF_VERSION, "dump-flows", target,
                    f"cookie={COOKIE:#x}/-1"])
    parsed = (parse_stats_line(line) for line in out.splitlines())
    return [p[1] for p in parsed if p is not None and p[0] == COOKIE]


def slot_name(bridge: str, flow: Flow) -> str:
    """A flow's stable name on its host: bridge, table, priority and match (not its actions,
    which change as other copies join its group: that re-installs it, a new epoch)."""
    key = f"{bridge} {flow.table} {flow.priority} {','.join(flow.match)}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


class CounterReader:
    """Flow statistics -> counter slots, each with a stable epoch.

    The install time computed from a flow's ``duration`` moves by a few ms between reads;
    the epoch of a slot stays put while the install time stays within ``SAME_EPOCH_MS`` of it
    and its counters only grow (the server applies the same rule across agent restarts).
    """

    def __init__(self) -> None:
        self._epochs: dict[str, tuple[int, int]] = {}  # slot -> (epoch ms, packets)

    def epoch(self, slot: str, installed_ms: int, packets: int) -> int:
        prev = self._epochs.get(slot)
        if (prev is not None and abs(installed_ms - prev[0]) <= SAME_EPOCH_MS
                and packets >= prev[1]):
            epoch = prev[0]
        else:
            epoch = installed_ms
        self._epochs[slot] = (epoch, packets)
        return epoch

    def slots(self, counted: Mapping[Flow, Iterable[Counted]],
              stats: Mapping[str, Iterable[FlowStats]], now: float) -> list[CounterSlot]:
        """The counter slots of the counted flows among ``stats`` (bridge -> its flows)."""
        out: list[CounterSlot] = []
        seen: set[str] = set()
        for bridge, flows in stats.items():
            for st in flows:
                counts = counted.get(st.flow)
                if not counts:
                    continue
                slot = slot_name(bridge, st.flow)
                seen.add(slot)
                epoch = self.epoch(slot, round((now - st.duration) * 1000), st.packets)
                out += [CounterSlot(kind, rid, counter, slot, epoch, st.packets,  # type: ignore[arg-type]
                                    st.bytes, direction)  # type: ignore[arg-type]
                        for kind, rid, counter, direction in counts]
        self._forget(seen, "f")
        return out

    def dropped(self, owners: Mapping[int, Counted], drops: Mapping[str, Iterable[MeterStats]],
                now: float) -> list[CounterSlot]:
        """The ``dropped`` slots of the rate-limit meters (meter id -> its resource) among
        ``drops`` (bridge -> its meters). A resource with two meters (max_pps and max_kbps)
        has two slots: its drops are their sum."""
        out: list[CounterSlot] = []
        seen: set[str] = set()
        for bridge, meters in drops.items():
            for d in meters:
                owner = owners.get(d.meter_id)
                if owner is None:
                    continue
                slot = f"m{bridge}/{d.meter_id:x}"
                seen.add(slot)
                epoch = self.epoch(slot, round((now - d.duration) * 1000), d.dropped_packets)
                kind, rid, _, direction = owner
                out.append(CounterSlot(kind, rid, "dropped", slot, epoch,  # type: ignore[arg-type]
                                       d.dropped_packets, d.dropped_bytes, direction))  # type: ignore[arg-type]
        self._forget(seen, "m")
        return out

    def _forget(self, seen: set[str], prefix: str) -> None:
        """Slots (flows: a hex name; meters: "m...") no longer on the switch."""
        for gone in [s for s in self._epochs if (s[0] == "m") == (prefix == "m")
                     and s not in seen]:
            del self._epochs[gone]
