"""OVS meters of the rate limits (max_pps / max_kbps), in one place: which meter id each
limited resource gets, the meters a host needs, and reading / writing them on a bridge.

A limit is one OpenFlow meter (a drop band) per (resource, unit): a tap flow, a tap service,
or one direction key of a tap mirror; ``pktps`` for max_pps, ``kbps`` for max_kbps (a resource
with both passes two meters in a row: a copy dropped by the first is not counted by the
second, so its drops are the sum of both bands). Ids are computed, not allocated: a hash of
(kind, id, direction, unit) into taas's own range, collisions resolved by probing in a fixed
order over the resources of the desired state; so the agent (and the counters, which read
the drop bands) find a resource's meters again after a restart without any stored state.
Where each meter sits in the pipeline is docs/pipeline.md ("Rate limits").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from taas.agent.ovs import tool
from taas.common.desired_state import DesiredState

__all__ = ["METER_FIRST", "METER_LAST", "MeterKey", "MeterSpec", "MeterStats", "burst_size",
           "delete_meters", "dropped", "limit_keys", "limits_error", "meter_ids", "meters_of",
           "read_meter_stats", "read_meters", "resource_meters", "write_meters"]

# taas's meter ids: never used by anything else on the shared bridges (the L2 agent's meters,
# e.g. Neutron's packet-rate QoS, are small numbers). 24 bits: collisions stay rare.
METER_FIRST = 0x7A00_0000
METER_LAST = 0x7AFF_FFFF
_SPAN = METER_LAST - METER_FIRST + 1

Unit = Literal["pktps", "kbps"]
# (kind, resource id, direction key of a tap mirror or None, unit)
MeterKey = tuple[str, str, str | None, Unit]
OF_VERSION = "OpenFlow14"
MIN_SNAPLEN, MAX_SNAPLEN = 64, 65535


@dataclass(frozen=True, order=True)
class MeterSpec:
    """One meter as taas writes it: a single drop band."""

    meter_id: int
    unit: Unit
    rate: int  # packets/s or kbit/s
    burst: int  # packets or kbit

    def text(self) -> str:
        """As ``ovs-ofctl add-meter`` takes it (and ``dump-meters`` prints it)."""
        return (f"meter={self.meter_id},{self.unit},burst,stats,"
                f"bands=type=drop,rate={self.rate},burst_size={self.burst}")


def burst_size(unit: Unit, rate: int) -> int:
    """The bucket of a limit: a tenth of a second of its rate, at least 10 packets or 128
    kbit (16 KB: a few full-size frames, so a low max_kbps still passes whole frames)."""
    return max(rate // 10, 10 if unit == "pktps" else 128)


def _limited(desired: DesiredState) -> list[tuple[MeterKey, int]]:
    """Every (meter key, rate) the desired state asks for, in a fixed order."""
    out: list[tuple[MeterKey, int]] = []

    def add(kind: str, rid: str, direction: str | None, pps: int | None,
            kbps: int | None) -> None:
        if pps:
            out.append(((kind, rid, direction, "pktps"), pps))
        if kbps:
            out.append(((kind, rid, direction, "kbps"), kbps))

    for f in desired.tap_flows:
        add("tap_flow", f.id, None, f.max_pps, f.max_kbps)
    for s in desired.tap_services:
        add("tap_service", s.id, None, s.max_pps, s.max_kbps)
    for m in desired.tap_mirrors:
        for d in sorted(m.directions):
            add("tap_mirror", m.id, d, m.max_pps, m.max_kbps)
    return sorted(out, key=lambda kr: tuple(x or "" for x in kr[0]))


def _hash(key: MeterKey) -> int:
    digest = hashlib.sha1("/".join(x or "" for x in key).encode()).digest()
    return int.from_bytes(digest[:4], "big") % _SPAN


def meter_ids(desired: DesiredState) -> dict[MeterKey, int]:
    """The meter id of every limit of the desired state (the same on every call for the same
    set of limits: the agent's compile and the counters use this one function)."""
    ids: dict[MeterKey, int] = {}
    taken: set[int] = set()
    for key, _ in _limited(desired):
        h = _hash(key)
        while METER_FIRST + h in taken:  # a collision: the next free id, in a fixed order
            h = (h + 1) % _SPAN
        ids[key] = METER_FIRST + h
        taken.add(METER_FIRST + h)
    return ids


def meters_of(desired: DesiredState) -> dict[MeterKey, MeterSpec]:
    """The meter of every limit of the desired state (whether this host installs it or not:
    the compiler picks those whose resource it installs)."""
    ids = meter_ids(desired)
    return {key: MeterSpec(ids[key], key[3], rate, burst_size(key[3], rate))
            for key, rate in _limited(desired)}


def resource_meters(desired: DesiredState) -> dict[tuple[str, str, str | None], tuple[int, ...]]:
    """(kind, resource id, mirror direction or None) -> its meter ids (pktps first): the drops
    of the resource are the sum of these meters' band drops (``dropped``)."""
    out: dict[tuple[str, str, str | None], tuple[int, ...]] = {}
    for (kind, rid, d, _), mid in sorted(meter_ids(desired).items(),
                                         key=lambda kv: kv[0][3] != "pktps"):
        out[(kind, rid, d)] = (*out.get((kind, rid, d), ()), mid)
    return out


def dropped(stats: Mapping[int, MeterStats], ids: Iterable[int]) -> int:
    """The copies the meters ``ids`` dropped (missing meters count 0)."""
    return sum(stats[i].dropped_packets for i in ids if i in stats)


def limit_keys(kind: str, rid: str, direction: str | None = None) -> tuple[MeterKey, MeterKey]:
    return (kind, rid, direction, "pktps"), (kind, rid, direction, "kbps")


def limits_error(snaplen: int | None, max_pps: int | None, max_kbps: int | None) -> str | None:
    """What the compiler cannot apply (the server's validation should have refused it)."""
    if snaplen is not None and not MIN_SNAPLEN <= snaplen <= MAX_SNAPLEN:
        return f"snaplen {snaplen} is outside {MIN_SNAPLEN}-{MAX_SNAPLEN}"
    for name, v in (("max_pps", max_pps), ("max_kbps", max_kbps)):
        if v is not None and not 1 <= v < 2**32:
            return f"{name} {v} is not a positive 32-bit integer"
    return None


# --- the switch -------------------------------------------------------------------------------

_CONFIG = re.compile(r"meter=(\d+)\s+(pktps|kbps)\b[^\n]*\n\s*type=drop\s+rate=(\d+)"
                     r"(?:\s+burst_size=(\d+))?")
_STATS = re.compile(r"meter:(\d+)\s.*?packet_in_count:(\d+).*?duration:([\d.]+)s\s+bands:"
                    r"\s*\n\s*0:\s*packet_count:(\d+)\s+byte_count:(\d+)", re.S)


@dataclass(frozen=True)
class MeterStats:
    """One meter's counts; they start at 0 when the meter is created (a new id, an OVS
    restart), ``duration`` seconds ago."""
    meter_id: int
    packets_in: int
    dropped_packets: int  # by its (one) drop band
    dropped_bytes: int
    duration: float


def _ofctl(target: str, *args: str) -> str:
    return tool.run(["ovs-ofctl", "-O", OF_VERSION, *args[:1], target, *args[1:]])


def read_meters(target: str) -> dict[int, MeterSpec]:
    """taas's meters on a bridge (``unix:<rundir>/<bridge>.mgmt``), as configured."""
    out: dict[int, MeterSpec] = {}
    for m in _CONFIG.finditer(_ofctl(target, "dump-meters")):
        mid = int(m.group(1))
        if METER_FIRST <= mid <= METER_LAST:
            out[mid] = MeterSpec(mid, m.group(2), int(m.group(3)),  # type: ignore[arg-type]
                                 int(m.group(4) or 0))
    return out


def read_meter_stats(target: str) -> dict[int, MeterStats]:
    """taas's meters on a bridge and their counts (``ovs-ofctl meter-stats``)."""
    out: dict[int, MeterStats] = {}
    for m in _STATS.finditer(_ofctl(target, "meter-stats")):
        mid = int(m.group(1))
        if METER_FIRST <= mid <= METER_LAST:
            out[mid] = MeterStats(mid, int(m.group(2)), int(m.group(4)), int(m.group(5)),
                                  float(m.group(3)))
    return out


def write_meters(target: str, have: Mapping[int, MeterSpec], want: Iterable[MeterSpec]
                 ) -> tuple[list[int], int]:
    """Add the missing meters of ``want`` and modify the changed ones (before the flows that
    use them are written); returns (ids of ``have`` not wanted: delete them with
    ``delete_meters`` once no flow uses them, number of meters written)."""
    want_by_id = {m.meter_id: m for m in want}
    written = 0
    for mid, spec in sorted(want_by_id.items()):
        cur = have.get(mid)
        if cur == spec:
            continue
        _ofctl(target, "mod-meter" if cur is not None else "add-meter", spec.text())
        written += 1
    return sorted(set(have) - set(want_by_id)), written


def delete_meters(target: str, ids: Iterable[int]) -> None:
    """Delete meters (OVS also deletes any flow still using one: call after the flows)."""
    for mid in ids:
        _ofctl(target, "del-meter", f"meter={mid}")
