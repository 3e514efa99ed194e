"""PUT /v2.0/taas-agents/{host}/counters: an agent's changed counters (docs/agent-api.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from taas.server.api.auth import Caller
from taas.server.api.common import json_body, write
from taas.server.services import counters

router = APIRouter(prefix="/v2.0")


@router.put("/taas-agents/{host}/counters")
async def report_counters(host: str, request: Request, ctx: Caller) -> Any:
    body = await json_body(request)
    result = await write(request, lambda uow: counters.report(uow, ctx, host, body))
    request.app.state.agents.beat(host)  # a counters report is a heartbeat too
    return {"counters": result}
