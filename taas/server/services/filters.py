"""Tap filters: project-owned rule lists that tap flows name (issue 10). A change of a filter's
rules or default action republishes the hosts of every live tap flow that uses it. Quotas:
`tap_filter` counts filters, `tap_filter_rule` the rules of all of a project's filters."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from taas.server.db.models import TapFilter
from taas.server.db.repositories import ListQuery, TapFilterRepository
from taas.server.db.session import UnitOfWork
from taas.server.services import errors, projection, validation
from taas.server.services.context import Context, owner_target
from taas.server.services.owned import get_visible, list_visible
from taas.server.services.tap import TapResources, now


class TapFilters:
    def __init__(self, taps: TapResources) -> None:
        self.taps = taps

    def create_tap_filter(self, uow: UnitOfWork, ctx: Context, body: Any) -> TapFilter:
        attrs = validation.check_body(validation.TAP_FILTER, body, resource="tap_filter")
        project = ctx.authorize_create("tap_filter", attrs, body)
        quotas = self.taps.quotas  # filters first, then rules: one lock order everywhere
        quotas.reserve(uow.session, project, "tap_filter")
        quotas.reserve(uow.session, project, "tap_filter_rule", len(attrs["rules"]))
        row = TapFilter(id=str(uuid.uuid4()), project_id=project, name=attrs["name"],
                        description=attrs["description"],
                        default_action=attrs["default_action"], rules=attrs["rules"],
                        created_at=now())
        return TapFilterRepository(uow.session).add(row)

    def get_tap_filter(self, session: Session, ctx: Context, id_: str) -> TapFilter:
        return get_visible(ctx, "tap_filter", TapFilterRepository(session), id_,
                           errors.TapFilterNotFound, "Tap Filter")

    def list_tap_filters(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "tap_filter", TapFilterRepository(session), q)

    def update_tap_filter(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any
                          ) -> TapFilter:
        session = uow.session
        row = self.get_tap_filter(session, ctx, id_)
        attrs = validation.check_body(validation.TAP_FILTER, body, update=True,
                                      resource="tap_filter")
        ctx.authorize_change("update", "tap_filter", owner_target(row.project_id), attrs.keys())
        if "rules" in attrs:
            self.taps.quotas.reserve(session, row.project_id, "tap_filter_rule",
                                     len(attrs["rules"]) - len(row.rules))
        for key, value in attrs.items():
            setattr(row, key, value)
        session.flush()
        if attrs.keys() & {"rules", "default_action"}:
            hosts: set[str] = set()
            for flow in TapFilterRepository(session).live_users(row.id):
                hosts |= projection.hosts_of(session, "tap_flow", flow)
            self.taps.changes.touch(uow, hosts)
        return row

    def delete_tap_filter(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        repo = TapFilterRepository(uow.session)
        row = self.get_tap_filter(uow.session, ctx, id_)
        ctx.authorize_change("delete", "tap_filter", owner_target(row.project_id))
        if users := repo.live_users(row.id):
            raise errors.TapFilterInUse(
                f"Tap Filter {row.id} is used by tap flow(s) "
                f"{', '.join(sorted(f.id for f in users)[:5])}; remove it from them first")
        repo.remove(row)
