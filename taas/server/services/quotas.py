"""Quotas as Neutron does them: a default per resource (settings `quota_<resource>`), a
per-project override set by an admin, -1 for unlimited; a create over the limit is 409
OverQuota. The check and the insert share one transaction under a per-(project, resource)
lock, so concurrent creates never pass the limit together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from taas.server.config import QUOTA_RESOURCES, Settings
from taas.server.db.quotas import QuotaRepository
from taas.server.db.session import UnitOfWork
from taas.server.services import errors
from taas.server.services.context import Context, owner_target

MAX_LIMIT = 2**31 - 1


class Quotas:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def defaults(self) -> dict[str, int]:
        return {r: int(getattr(self.settings, f"quota_{r}")) for r in QUOTA_RESOURCES}

    def limits(self, session: Session, project_id: str) -> dict[str, int]:
        return {**self.defaults(), **{
            k: v for k, v in QuotaRepository(session).overrides(project_id).items()
            if k in QUOTA_RESOURCES}}

    # ---- enforcement (called by the services that create) -----------------------------

    def reserve(self, session: Session, project_id: str, resource: str, amount: int = 1
                ) -> None:
        """Raise OverQuota unless `amount` more of `resource` fit the project's limit. Call
        it in the unit of work that makes the change, before the change is flushed (the lock
        lasts until its commit). Shrinking (amount <= 0) is always allowed, as in Neutron:
        a project over a lowered limit can still clean up."""
        if amount <= 0:
            return
        repo = QuotaRepository(session)
        limit = self.limits(session, project_id)[resource]
        if limit < 0:
            return
        repo.lock(resource, project_id)
        session.flush()  # rows added earlier in this unit (bulk creates) count too
        if repo.usage(resource, project_id) + amount > limit:
            raise errors.OverQuota(f"Quota exceeded for resources: ['{resource}'].")

    # ---- the /v2.0/quotas API ---------------------------------------------------------

    def show(self, session: Session, ctx: Context, project_id: str) -> dict[str, int]:
        ctx.authorize("get_quota", owner_target(project_id))
        return self.limits(session, project_id)

    def details(self, session: Session, ctx: Context, project_id: str) -> dict[str, Any]:
        limits = self.show(session, ctx, project_id)
        repo = QuotaRepository(session)
        return {r: {"limit": limit, "used": repo.usage(r, project_id), "reserved": 0}
                for r, limit in limits.items()}

    def list(self, session: Session, ctx: Context) -> list[dict[str, Any]]:
        """Projects whose quotas differ from the defaults (admin), as Neutron lists them."""
        ctx.require("admin_only")
        defaults = self.defaults()
        return [{"project_id": p, "tenant_id": p, **defaults, **{
                    k: v for k, v in o.items() if k in QUOTA_RESOURCES}}
                for p, o in QuotaRepository(session).all_overrides().items()]

    def update(self, uow: UnitOfWork, ctx: Context, project_id: str, body: Any
               ) -> dict[str, int]:
        ctx.authorize("update_quota", owner_target(project_id))
        if not isinstance(body, dict) or not body:
            raise errors.InvalidInput("'quota' must be a non-empty object of resource limits")
        changes: dict[str, int] = {}
        for resource, value in body.items():
            if resource not in QUOTA_RESOURCES:
                raise errors.InvalidInput(
                    f"Unknown quota resource {resource!r}; known: {', '.join(QUOTA_RESOURCES)}")
            try:
                limit = int(value)
            except (TypeError, ValueError):
                limit = -2
            if isinstance(value, bool) or isinstance(value, float) or not (
                    -1 <= limit <= MAX_LIMIT):
                raise errors.InvalidInput(
                    f"Quota limit for {resource} must be an integer >= -1, got {value!r}")
            changes[resource] = limit
        repo = QuotaRepository(uow.session)
        for resource, limit in changes.items():
            repo.set(project_id, resource, limit)
        return self.limits(uow.session, project_id)

    def reset(self, uow: UnitOfWork, ctx: Context, project_id: str) -> None:
        ctx.authorize("delete_quota", owner_target(project_id))
        QuotaRepository(uow.session).reset(project_id)
