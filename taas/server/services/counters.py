"""Counters: the agents' raw flow counters accumulated into totals that never go backwards.

An agent reports, for each flow (or meter) of its host that counts for a resource, a *slot*:
raw packets/bytes and the *epoch* of that flow (when it was installed). Per (host, slot,
counter) the server keeps the last raw value and its epoch, and adds the growth to the
resource's total: the same epoch (within SAME_EPOCH_MS) and values not lower mean the same
flow, so the difference is new; otherwise the flow was re-installed (OVS restart, a change of
its actions) and its counters restarted at 0, so the whole raw value is new. Totals thus
survive agent restarts (same flows, same epochs), flow re-installs and port moves (another
host's slots). Each report costs O(what changed): agents send only slots that changed.

Stored in the resource's row (``counters`` JSON): ``{"totals": {name: [packets, bytes]},
"slots": {"host|slot|name": [epoch, packets, bytes]}, "updated_at": "..."}``; ``name`` is the
counter (``sent:IN`` for a tap mirror direction).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from taas.common.desired_state import (
    SAME_EPOCH_MS,
    ContractError,
    CounterSlot,
    CountersReport,
    SyncStats,
)
from taas.server.db.counters import CounterRepository
from taas.server.db.repositories import AgentRepository
from taas.server.db.session import UnitOfWork
from taas.server.services import errors
from taas.server.services.context import Context
from taas.server.services.tap import now

TIME = "%Y-%m-%dT%H:%M:%SZ"


def counter_name(s: CounterSlot) -> str:
    return s.counter if s.direction is None else f"{s.counter}:{s.direction}"


def accumulate(doc: dict[str, Any] | None, host: str, slots: Iterable[CounterSlot],
               stamp: datetime) -> dict[str, Any]:
    """A resource's counters after `host` reported `slots` (a new document: JSON columns
    change by assignment)."""
    out = copy.deepcopy(doc) if doc else {"totals": {}, "slots": {}}
    for s in slots:
        name = counter_name(s)
        key = f"{host}|{s.slot}|{name}"
        prev = out["slots"].get(key)
        if (prev is not None and abs(s.epoch - prev[0]) <= SAME_EPOCH_MS
                and s.packets >= prev[1] and s.bytes >= prev[2]):
            epoch, grew = prev[0], (s.packets - prev[1], s.bytes - prev[2])
        else:  # a new flow, or one whose counters restarted: everything in it is new
            epoch, grew = s.epoch, (s.packets, s.bytes)
        out["slots"][key] = [epoch, s.packets, s.bytes]
        total = out["totals"].setdefault(name, [0, 0])
        total[0] += grew[0]
        total[1] += grew[1]
    out["updated_at"] = stamp.strftime(TIME)
    return out


def accumulate_syncs(doc: dict[str, Any] | None, boot: str, syncs: SyncStats
                     ) -> dict[str, Any]:
    """An agent's convergences: totals across its restarts (each boot restarts its counts)."""
    out = dict(doc or {"count": 0, "seconds": 0.0})
    raw = out.get("raw")
    if raw is not None and raw[0] == boot and syncs.count >= raw[1]:
        grew = (syncs.count - raw[1], max(0.0, syncs.seconds - raw[2]))
    else:
        grew = (syncs.count, syncs.seconds)
    out.update(count=out["count"] + grew[0], seconds=out["seconds"] + grew[1],
               last_ms=syncs.last_ms, raw=[boot, syncs.count, syncs.seconds])
    return out


def parse(host: str, body: Any) -> CountersReport:
    data = body.get("counters") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise errors.InvalidInput("'counters' must be a JSON object")
    if data.get("host", host) != host:
        raise errors.InvalidInput(f"counters are for host {data.get('host')!r}, not {host!r}")
    try:
        return CountersReport.from_dict({"host": host, **data})
    except ContractError as exc:
        raise errors.InvalidInput(f"Invalid counters: {exc}") from None


def report(uow: UnitOfWork, ctx: Context, host: str, body: Any) -> dict[str, Any]:
    """Store a host's counters report (PUT /v2.0/taas-agents/{host}/counters)."""
    ctx.require_agent(host)
    msg = parse(host, body)
    session = uow.session
    agent = AgentRepository(session).by_host(host)
    if agent is None:
        raise errors.AgentNotFound(f"No agent registered for host {host}; register first")
    if agent.counters_boot == msg.boot and (agent.counters_seq or 0) >= msg.seq:
        return {"host": host, "seq": msg.seq, "accepted": 0}  # an older report, arrived late
    by_resource: dict[tuple[str, str], list[CounterSlot]] = defaultdict(list)
    for s in msg.counters:
        by_resource[(s.kind, s.id)].append(s)
    stamp = now()
    accepted = 0
    repo = CounterRepository(session)
    for kind in ("tap_service", "tap_flow", "tap_mirror"):
        ids = {rid for k, rid in by_resource if k == kind}
        for row in repo.rows_for_update(kind, ids):  # unknown (deleted) ids are ignored
            row.counters = accumulate(row.counters, host, by_resource[(kind, row.id)], stamp)
            accepted += 1
    if msg.syncs is not None:
        agent.sync_stats = accumulate_syncs(agent.sync_stats, msg.boot, msg.syncs)
    agent.counters_boot, agent.counters_seq = msg.boot, msg.seq
    session.flush()
    return {"host": host, "seq": msg.seq, "accepted": accepted}


# ---- what GETs show -------------------------------------------------------------------------

def _total(doc: dict[str, Any], name: str) -> list[int]:
    return list(doc.get("totals", {}).get(name, [0, 0]))


def statistics(kind: str, counters: dict[str, Any] | None,
               directions: Iterable[str] = ()) -> dict[str, Any]:
    """The `statistics` of a tap resource's GET (docs/api.md, "Statistics")."""
    doc = counters or {}
    stamp = doc.get("updated_at")
    if kind == "tap_flow":
        mirrored, filtered, dropped = (_total(doc, n) for n in ("mirrored", "filtered", "dropped"))
        return {"mirrored_packets": mirrored[0], "mirrored_bytes": mirrored[1],
                "filtered_packets": filtered[0], "dropped_packets": dropped[0],
                "updated_at": stamp}
    if kind == "tap_service":
        delivered, dropped = _total(doc, "delivered"), _total(doc, "dropped")
        return {"delivered_packets": delivered[0], "delivered_bytes": delivered[1],
                "dropped_packets": dropped[0], "updated_at": stamp}
    out: dict[str, Any] = {}
    for d in sorted(directions):
        sent, dropped = _total(doc, f"sent:{d}"), _total(doc, f"dropped:{d}")
        out[d] = {"sent_packets": sent[0], "sent_bytes": sent[1], "dropped_packets": dropped[0]}
    out["updated_at"] = stamp
    return out
