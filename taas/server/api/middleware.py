"""Pure ASGI middlewares: they see every request before FastAPI reads or routes it."""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taas.server.services.errors import TaasError

LOG = logging.getLogger(__name__)


class BodyTooLarge(TaasError):
    status, type = 413, "HTTPRequestEntityTooLarge"


def _error_body(status: int, type_: str, message: str, detail: str = "") -> bytes:
    return json.dumps(
        {"NeutronError": {"type": type_, "message": message, "detail": detail}}
    ).encode()


async def send_error(send: Send, status: int, type_: str, message: str, detail: str = "",
                     close: bool = False) -> None:
    body = _error_body(status, type_, message, detail)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpMiddleware:
    """Wraps the app for HTTP requests only: lifespan and websocket scopes pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(HttpMiddleware):
    """Refuse bodies over `limit` bytes with 413 before they are buffered: at once when
    Content-Length says so, else (chunked) as soon as the streamed count passes the limit.
    The refused body is not read to its end, so the response closes the connection."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    def _message(self) -> str:
        return "Request body too large"

    def _detail(self) -> str:
        return f"The limit is {self.limit} bytes"

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_error(send, 413, BodyTooLarge.type, self._message(), self._detail(),
                                 close=True)
                return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    raise BodyTooLarge(self._message(), self._detail())
            return message

        async def closing_send(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        await self.app(scope, counting_receive, closing_send)


class CatchAll(HttpMiddleware):
    """The last resort for exceptions no handler took: log them, answer a generic 500, and
    keep the connection usable. (Starlette's own last resort re-raises after answering, and
    the server then drops the kept-alive connection under the client's next request.)"""

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # Nobody to answer; a traceback per vanished client floods the log under load.
            LOG.info("client went away during %s %s", scope.get("method"), scope.get("path"))
        except Exception:  # noqa: BLE001 - answered below, the details go to the log only
            LOG.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only closing the connection is honest
            await send_error(send, 500, "HTTPInternalServerError", "Internal server error")



REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
ACCESS_LOG = logging.getLogger("taas.server.access")


def install_request_id_logging() -> None:
    """Give every log record `%(request_id)s`: the id of the request being served, or "-"."""
    base = logging.getLogRecordFactory()
    if getattr(base, "taas_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory.taas_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RequestId(HttpMiddleware):
    """Neutron's `X-Openstack-Request-Id: req-<uuid>` on every answer, and one log line per
    request carrying it (every other line logged while serving it carries it too)."""

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = f"req-{uuid.uuid4()}"
        token = REQUEST_ID.set(request_id)
        status = 0
        start = time.monotonic()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-openstack-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ACCESS_LOG.info("%s %s %s %s %.1f ms", request_id, scope.get("method"),
                            scope.get("path"), status or "-", (time.monotonic() - start) * 1000)
            REQUEST_ID.reset(token)


class HeadAsGet:
    """HEAD is answered wherever GET is, with GET's status and headers and no body (as
    Neutron's API does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def no_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, no_body)
