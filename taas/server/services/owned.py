"""Steps every tenant-owned resource shares: the one row a caller may see, the rows it may
list, and a PUT of its attributes."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from taas.server.db.models import Base
from taas.server.db.repositories import ListQuery, Repository
from taas.server.services import errors, validation
from taas.server.services.context import Context, owner_target

M = TypeVar("M", bound=Base)


def get_visible(ctx: Context, kind: str, repo: Repository[M], id_: str,
                not_found: type[errors.NotFound], what: str) -> M:
    """The row, or `not_found` alike whether it is missing or another project's."""
    ctx.require_read(kind)
    row = repo.get(id_)
    if row is None or not ctx.sees(kind, row.project_id):  # type: ignore[attr-defined]
        raise not_found(f"{what} {id_} could not be found")
    return row


def list_visible(ctx: Context, kind: str, repo: Repository[M],
                 q: ListQuery) -> tuple[list[M], bool]:
    """One page of rows; a non-admin caller sees its own project's only."""
    ctx.require_read(kind)
    if not ctx.is_admin:
        q.project_id = ctx.project_id
    return repo.list(q)


def update_attrs(session: Session, ctx: Context, row: M, spec: dict[str, validation.Attr],
                 body: Any, kind: str) -> M:
    """A PUT: the body checked against `spec`, the change authorized, then written."""
    attrs = validation.check_body(spec, body, update=True, resource=kind)
    ctx.authorize_change("update", kind, owner_target(row.project_id),  # type: ignore[attr-defined]
                         attrs.keys())
    for key, value in attrs.items():
        setattr(row, key, value)
    session.flush()
    return row
