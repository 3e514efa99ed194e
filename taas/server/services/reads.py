"""Reads every resource shares: one row the caller may see, or the rows it may list."""

from __future__ import annotations

from typing import TypeVar

from taas.server.db.models import Base
from taas.server.db.repositories import ListQuery, Repository
from taas.server.services import errors
from taas.server.services.context import Context

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
