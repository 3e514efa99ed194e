"""Request plumbing shared by the routers: bodies, list queries, pagination, threadpool."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.concurrency import run_in_threadpool

from taas.server.db.repositories import ListQuery
from taas.server.db.session import Database, UnitOfWork
from taas.server.services.errors import BadRequest, Conflict, InvalidInput

T = TypeVar("T")
RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
MAX_BODY = 1024 * 1024


async def json_body(request: Request) -> Any:
    """The request's JSON document, or 400 saying what is wrong with it."""
    ctype = request.headers.get("content-type", "")
    if ctype and ctype.split(";")[0].strip().lower() != "application/json":
        raise BadRequest(f"Unsupported content type {ctype!r}: send application/json")
    raw = await request.body()  # middleware.BodyLimit caps it (413) while it streams in
    if not raw.strip():
        raise BadRequest("Request body is empty: a JSON object is required")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"Malformed JSON in request body: {exc}") from None
    check_unicode(doc)
    return doc


def _bad_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_unicode(doc: Any, where: str = "") -> None:
    """400 for strings no database can store: JSON may escape lone surrogates ("\\ud800"),
    which decode to a str that is not UTF-8 (SQLite and PostgreSQL would fail differently)."""
    stack = [(where, doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _bad_unicode(value):
                raise InvalidInput(f"'{path or 'body'}' is not valid Unicode (lone surrogate)")
        elif isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else key
                if _bad_unicode(key):
                    raise InvalidInput(f"A key in '{path or 'body'}' is not valid Unicode "
                                       "(lone surrogate)")
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def unwrap(body: Any, singular: str, plural: str | None = None) -> tuple[Any, bool]:
    """The resource(s) inside Neutron's envelope; (value, is_bulk)."""
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object with key '{singular}'")
    keys = set(body)
    if keys == {singular}:
        return body[singular], False
    if plural and keys == {plural}:
        items = body[plural]
        if not isinstance(items, list) or not items:
            raise BadRequest(f"'{plural}' must be a non-empty list")
        return items, True
    expected = f"'{singular}'" + (f" or '{plural}'" if plural else "")
    raise BadRequest(f"Request body must have exactly one key, {expected}; got {sorted(keys)}")


async def read(request: Request, fn: Callable[[Any], T]) -> T:
    """Run `fn(session)` on a read session in the threadpool."""
    db: Database = request.app.state.db

    def run() -> T:
        with db.read() as session:
            return fn(session)

    return await run_in_threadpool(run)


RETRIES = 4
RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # a concurrent insert won; the retry sees it and answers with a clean 409
    if getattr(exc.orig, "sqlstate", None) in RETRY_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)


async def write(request: Request, fn: Callable[[UnitOfWork], T]) -> T:
    """Run `fn(uow)` in a committed unit of work in the threadpool, retrying transactions that
    lost a race (nothing of a failed attempt was committed, post-commit actions never ran)."""
    db: Database = request.app.state.db

    def run() -> T:
        for attempt in range(RETRIES):
            try:
                with db.write() as uow:
                    return fn(uow)
            except DBAPIError as exc:
                if not _retryable(exc):
                    raise
                if attempt == RETRIES - 1:
                    if isinstance(exc, IntegrityError):
                        raise Conflict("The request conflicts with a concurrent change") from exc
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    return await run_in_threadpool(run)


Converter = Callable[[str], Any]


def to_bool(value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{value!r} is not a boolean")


def to_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an integer") from None
    if not -(2**31) <= number < 2**31:
        raise InvalidInput(f"{value!r} is out of range")
    return number


def host_filter(value: str) -> str | None:
    return value or None


def text(column: str) -> tuple[str, Converter]:
    """A list filter comparing a text column with the value as given."""
    return (column, str)


# Filters every owned resource has (Neutron's tenant_id is our project_id).
OWNED_FILTERS = {"id": text("id"), "name": text("name"), "description": text("description"),
                 "tenant_id": text("project_id"), "project_id": text("project_id")}


def list_query(request: Request, filters: dict[str, tuple[str, Converter]]) -> ListQuery:
    """Filters (repeated = OR), sort and page from the query string; unknown names ignored."""
    q = ListQuery()
    params = request.query_params
    for name, value in params.multi_items():
        if name in RESERVED or name not in filters:
            continue
        column, convert = filters[name]
        if "\x00" in value:
            raise InvalidInput(f"filter {name}: NUL characters are not allowed")
        try:
            q.filters.setdefault(column, []).append(convert(value))
        except InvalidInput as exc:
            raise InvalidInput(f"filter {name}: {exc.message}") from None
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    if dirs and len(dirs) != len(keys):
        raise InvalidInput("sort_key and sort_dir must come in pairs")
    for i, key in enumerate(keys):
        if key not in filters and key != "created_at":
            raise InvalidInput(f"{key!r} is not a sort key; use one of {sorted(filters)}")
        direction = dirs[i] if dirs else "asc"
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"sort_dir must be asc or desc, got {direction!r}")
        column = filters[key][0] if key in filters else key
        q.sort.append((column, direction))
    if "limit" in params:
        limit = to_int(params["limit"])
        if limit < 0:
            raise InvalidInput("limit must not be negative")
        q.limit = limit or None
    q.marker = params.get("marker") or None
    q.page_reverse = to_bool(params.get("page_reverse", "false"))
    return q


def select_fields(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    wanted = [f for f in request.query_params.getlist("fields") if f]
    if not wanted:
        return item
    return {k: v for k, v in item.items() if k in wanted}


def page_links(
    request: Request, plural: str, q: ListQuery, items: list[dict[str, Any]], more: bool
) -> dict[str, Any]:
    """Neutron's `<plural>_links` (next/previous) when paging with limit."""
    if q.limit is None or not items:
        return {}
    base = request.app.state.settings.endpoint + request.url.path  # never the Host header
    keep = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("marker", "page_reverse")]

    def href(marker: str, reverse: bool) -> str:
        query = keep + [("marker", marker)] + ([("page_reverse", "True")] if reverse else [])
        return f"{base}?{urlencode(query)}"

    links = []
    first, last = items[0]["id"], items[-1]["id"]
    has_next = more if not q.page_reverse else q.marker is not None
    has_prev = q.marker is not None if not q.page_reverse else more
    if has_next:
        links.append({"rel": "next", "href": href(last, False)})
    if has_prev:
        links.append({"rel": "previous", "href": href(first, True)})
    return {f"{plural}_links": links} if links else {}


# ---- the shape of Neutron's CRUD endpoints (each route names its service method) ---------

Item = dict[str, Any]


async def create_items(request: Request, singular: str, plural: str | None,
                       create: Callable[[UnitOfWork, Any], Item]) -> Item:
    """POST: one resource, or (when `plural` is given) a bulk list, all in one transaction."""
    body, bulk = unwrap(await json_body(request), singular, plural)
    if bulk:
        items = await write(request, lambda uow: [create(uow, b) for b in body])
        return {plural: items}
    return {singular: await write(request, lambda uow: create(uow, body))}


async def list_items(
    request: Request, plural: str, filters: dict[str, tuple[str, Converter]],
    fetch: Callable[[Any, ListQuery], tuple[list[Any], bool]], view: Callable[[Any], Item],
) -> Item:
    """GET on a collection: filters, sort, page and `fields` from the query string."""
    q = list_query(request, filters)

    def run(session: Any) -> tuple[list[Item], bool]:
        rows, more = fetch(session, q)
        return [view(r) for r in rows], more

    items, more = await read(request, run)
    out: Item = {plural: [select_fields(request, i) for i in items]}
    out.update(page_links(request, plural, q, items, more))
    return out


async def show_item(request: Request, singular: str, fetch: Callable[[Any], Item]) -> Item:
    return {singular: select_fields(request, await read(request, fetch))}


async def update_item(request: Request, singular: str,
                      update: Callable[[UnitOfWork, Any], Item]) -> Item:
    body, _ = unwrap(await json_body(request), singular)
    return {singular: await write(request, lambda uow: update(uow, body))}
