"""SQL of the counters: the tap resources' rows whose counters a report updates, and the
reads of the metrics endpoint."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taas.server.db.models import Agent, TapFlow, TapMirror, TapService

MODELS: dict[str, Any] = {"tap_service": TapService, "tap_flow": TapFlow,
                          "tap_mirror": TapMirror}


class CounterRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def rows_for_update(self, kind: str, ids: Iterable[str]) -> list[Any]:
        """The rows of `ids` (those that exist), locked until the transaction ends: two hosts
        reporting one resource (a port that moved) add to its counters one after the other.
        SQLite serialises writes anyway."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        model = MODELS[kind]
        stmt = select(model).where(model.id.in_(wanted)).order_by(model.id).with_for_update()
        return list(self.session.scalars(stmt))

    def counted(self, kind: str) -> list[tuple[Any, ...]]:
        """(id, project_id, counters[, directions]) of every resource with counters."""
        model = MODELS[kind]
        cols = [model.id, model.project_id, model.counters]
        if kind == "tap_mirror":
            cols.append(model.directions)
        stmt = select(*cols).where(model.counters.is_not(None))
        return [tuple(r) for r in self.session.execute(stmt)]

    def sync_stats(self) -> list[tuple[str, dict[str, Any]]]:
        stmt = select(Agent.host, Agent.sync_stats).where(Agent.sync_stats.is_not(None))
        return [(h, s) for h, s in self.session.execute(stmt)]
