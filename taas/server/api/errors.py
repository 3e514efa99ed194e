"""Every error leaves as Neutron's body: {"NeutronError": {"type", "message", "detail"}}."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from taas.server.services.errors import TaasError

LOG = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
}
DB_UNAVAILABLE = "The database is unavailable; try again later"


def neutron_error(status: int, type_: str, message: str, detail: str = "",
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"NeutronError": {"type": type_, "message": message, "detail": detail}},
        headers=headers,
    )


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for the errors we expect; anything else is middleware.CatchAll's (500)."""

    @app.exception_handler(TaasError)
    async def _taas_error(_request: Request, exc: TaasError) -> JSONResponse:
        return neutron_error(exc.status, exc.type, exc.message, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 becomes Neutron's 400 with a readable message.
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return neutron_error(400, "HTTPBadRequest", "Invalid request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return neutron_error(exc.status_code, type_, message, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, DataError):
            # The database refused a value (e.g. out of range): bad input. No database text
            # goes back: it names columns and SQL.
            LOG.info("database refused a value on %s %s: %s", request.method, request.url.path,
                     _first_line(exc))
            return neutron_error(400, "InvalidInput", "Invalid value in request")
        if isinstance(exc, IntegrityError | ProgrammingError):
            LOG.error("database error on %s %s", request.method, request.url.path,
                      exc_info=exc)
            return neutron_error(500, "HTTPInternalServerError", "Internal server error")
        return _unavailable(request, _first_line(exc))

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        return _unavailable(request, str(exc).splitlines()[0])


def routes_of(routes: list[Any]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI's included routers
        if inner is not None:
            yield from routes_of(inner.routes)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path. (Starlette's own Allow names only the
    first route matching the path, e.g. POST alone where GET is also served.)"""
    path = request.url.path
    methods: set[str] = set()
    for route in routes_of(request.app.router.routes):
        if route.path_regex.fullmatch(path):
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")  # middleware.HeadAsGet
    return sorted(methods)


def _unavailable(request: Request, why: str) -> JSONResponse:
    """Connection refused or lost, locked, out of connections: the client may retry. The
    cause (addresses, SQL) stays in the log; one line, no traceback, since an outage makes
    every request fail."""
    LOG.warning("database unavailable on %s %s: %s", request.method, request.url.path, why)
    return neutron_error(503, "HTTPServiceUnavailable", DB_UNAVAILABLE)
