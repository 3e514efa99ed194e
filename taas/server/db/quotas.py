"""SQL of quotas: per-project overrides, usage counts and the lock that makes check-then-insert
safe under concurrent creates."""

from __future__ import annotations

import zlib

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from taas.server.db.models import Quota, TapFilter, TapFlow, TapMirror, TapService

# Resources counted as rows; tap_filter_rule is the sum of the project's filters' rules.
MODELS = {"tap_service": TapService, "tap_flow": TapFlow, "tap_mirror": TapMirror,
          "tap_filter": TapFilter}
LOCK_CLASS = 0x7A5  # first key of pg_advisory_xact_lock(int, int): "taas quota"


class QuotaRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def overrides(self, project_id: str) -> dict[str, int]:
        rows = self.session.scalars(select(Quota).where(Quota.project_id == project_id))
        return {q.resource: q.limit for q in rows}

    def all_overrides(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for q in self.session.scalars(select(Quota).order_by(Quota.project_id)):
            out.setdefault(q.project_id, {})[q.resource] = q.limit
        return out

    def set(self, project_id: str, resource: str, limit: int) -> None:
        row = self.session.get(Quota, (project_id, resource))
        if row is None:
            self.session.add(Quota(project_id=project_id, resource=resource, limit=limit))
        else:
            row.limit = limit
        self.session.flush()

    def reset(self, project_id: str) -> None:
        self.session.execute(delete(Quota).where(Quota.project_id == project_id))

    def usage(self, resource: str, project_id: str) -> int:
        """Live rows (PENDING_DELETE ones are gone for their owner and do not count); for
        tap_filter_rule, the rules of all the project's filters (filters are deleted at once)."""
        if resource == "tap_filter_rule":
            return self.session.scalar(
                select(func.coalesce(func.sum(func.json_array_length(TapFilter.rules)), 0))
                .where(TapFilter.project_id == project_id)) or 0
        model = MODELS[resource]
        stmt = select(func.count()).select_from(model).where(model.project_id == project_id)
        if hasattr(model, "status"):
            stmt = stmt.where(model.status != "PENDING_DELETE")
        return self.session.scalar(stmt) or 0

    def lock(self, resource: str, project_id: str) -> None:
        """Serialize creates of one resource in one project until the transaction ends.

        PostgreSQL: a transaction-scoped advisory lock (shared by every replica); the count
        that follows (READ COMMITTED) then sees every create committed before. SQLite: writes
        are already serialized by the database's process-wide write lock."""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        key = zlib.crc32(f"{resource}/{project_id}".encode()) - 2**31  # signed int4
        self.session.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"),
                             {"c": LOCK_CLASS, "k": key})
