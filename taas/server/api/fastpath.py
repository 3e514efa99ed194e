"""The agents' two hot calls, served without FastAPI's routing and dependency machinery.

An idle cloud's agents send the server little else than heartbeats (PUT
/v2.0/taas-agents/{host}) and long-polls (GET /v2.0/taas-agents/{host}/desired-state): at
1,000 agents some 30 a second. Through FastAPI (matching the path against every route,
solving dependencies, wrapping exception handling twice) each cost about as much CPU as its
own work. This pure ASGI middleware is the innermost of the app's own (request id, body
limit, catch-all 500 all still apply) and calls the same handlers with the same
authentication; their exceptions go to the app's exception handlers (Neutron errors, 503 when
the database is down), anything else on to the catch-all. Every other request, and these paths
with other methods, go to FastAPI, which still documents these routes in the OpenAPI.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from taas.server.api import agents
from taas.server.api.auth import request_context
from taas.server.api.errors import routes_of
from taas.server.api.middleware import HttpMiddleware
from taas.server.services.context import Context

Handler = Callable[[str, Request, Context], Awaitable[Any]]
ROUTES: dict[tuple[str, re.Pattern[str]], Handler] = {
    ("PUT", re.compile(r"/v2\.0/taas-agents/([^/]+)")): agents.register,
    ("GET", re.compile(r"/v2\.0/taas-agents/([^/]+)/desired-state")): agents.desired_state,
}


class AgentFastPath(HttpMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._routes: dict[Handler, Route] = {}

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        for (verb, pattern), handler in ROUTES.items():
            if verb == method and (match := pattern.fullmatch(path)):
                # The FastAPI route it stands for: what the request metrics label it with.
                scope["route"] = self._route(scope["app"], handler)
                await self._call(handler, match.group(1), scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _route(self, app: Any, handler: Handler) -> Route:
        if handler not in self._routes:
            self._routes[handler] = next(r for r in routes_of(app.router.routes)
                                         if getattr(r, "endpoint", None) is handler)
        return self._routes[handler]

    @staticmethod
    async def _call(handler: Handler, host: str, scope: Scope, receive: Receive,
                    send: Send) -> None:
        request = Request(scope, receive)
        try:
            if request.app.state.settings.auth_strategy == "keystone":
                # Validating a token may ask Keystone: not on the event loop (as FastAPI runs
                # this sync dependency in its threadpool).
                ctx = await run_in_threadpool(request_context, request)
            else:
                ctx = request_context(request)
            result = await handler(host, request, ctx)
            response = result if isinstance(result, Response) else JSONResponse(result)
        except Exception as exc:  # noqa: BLE001 - the app's handler for it, else re-raised
            response = await _handled(request, exc)
        await response(scope, receive, send)


async def _handled(request: Request, exc: Exception) -> Response:
    """The response of the app's exception handler for `exc` (as FastAPI picks it: the
    nearest class in its MRO); re-raises `exc` when none (the catch-all's 500)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return await handlers[cls](request, exc)  # type: ignore[no-any-return]
    raise exc
