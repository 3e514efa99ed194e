"""Every error leaves as Neutron's body: {"NeutronError": {"type", "message", "detail"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from taas.server.services.errors import TaasError

LOG = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
}


def neutron_error(status: int, type_: str, message: str, detail: str = "") -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"NeutronError": {"type": type_, "message": message, "detail": detail}},
    )


def install_error_handlers(app: FastAPI) -> None:
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
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return neutron_error(exc.status_code, type_, message)

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value (e.g. out of range, NUL byte in a path id): bad input.
        LOG.info("database refused a value: %s", exc.orig)
        return neutron_error(400, "InvalidInput", "Invalid value in request",
                             str(exc.orig).splitlines()[0] if exc.orig else "")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unhandled error on %s %s", request.method, request.url.path)
        return neutron_error(500, "HTTPInternalServerError", "Internal server error", repr(exc))
