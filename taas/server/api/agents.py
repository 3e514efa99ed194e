"""Agent-facing API (docs/agent-api.md) and the admin view of agents."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from taas.server.api import views
from taas.server.api.auth import Caller
from taas.server.api.common import json_body, list_query, page_links, read, select_fields, write
from taas.server.services import watch
from taas.server.services.errors import InvalidInput

router = APIRouter(prefix="/v2.0")


def _agents(request: Request) -> Any:
    return request.app.state.agents


LOG = logging.getLogger(__name__)


def beat_flush_interval(agent_down_time: float) -> float:
    """Seconds between two stores of the queued heartbeats (and of the hosts whose long-poll
    waits): a sixth of agent_down_time, within 1..5 s. A stored heartbeat then trails the
    agent's last contact by at most this (plus one flush), far inside agent_down_time, so a
    live agent never looks dead (the deletion gate relies on that); a dead one is seen dead
    at most this much later (a deletion waits that much longer, never less)."""
    return min(5.0, max(1.0, agent_down_time / 6))


def _view(agent: Any, counters_interval: float = 0.0) -> dict[str, Any]:
    # The digests let the agent skip re-sending an unchanged port set or report;
    # watch_keeps_alive: a waiting long-poll counts as a heartbeat here; counters_interval:
    # how often the agent may send its changed counters (api/counters.py; absent: never).
    out = {**views.agent(agent, True), "ports_digest": agent.ports_digest,
           "report_digest": agent.report_digest, "watch_keeps_alive": True}
    if counters_interval > 0:
        out["counters_interval"] = counters_interval
    return out


async def _flush_beats(state: Any) -> None:
    """Store the queued heartbeats every few seconds, for as long as the server runs."""
    def flush() -> None:
        with state.db.write() as uow:
            state.agents.flush_beats(uow)

    interval = beat_flush_interval(state.settings.agent_down_time)
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(flush)
        except Exception:  # noqa: BLE001 - the database may be down: the next flush retries
            LOG.warning("storing heartbeats failed; retrying", exc_info=True)


@router.put("/taas-agents/{host}")
async def register(host: str, request: Request, ctx: Caller) -> Any:
    """Register, or heartbeat: a known agent with the same tunnel IP costs one read here and
    a share of one UPDATE every few seconds (heartbeats are batched)."""
    body = await json_body(request)
    svc = _agents(request)
    state = request.app.state
    if getattr(state, "beat_flusher", None) is None:
        state.beat_flusher = asyncio.get_running_loop().create_task(_flush_beats(state))
    every = state.settings.counters_interval
    item = await read(request,
                      lambda s: (a := svc.heartbeat(s, ctx, host, body)) and _view(a, every))
    if not item:
        item = await write(request,
                          lambda uow: _view(svc.register(uow, ctx, host, body), every))
    return {"agent": item}


@router.put("/taas-agents/{host}/ports")
async def set_ports(host: str, request: Request, ctx: Caller) -> Any:
    body = await json_body(request)
    svc = _agents(request)
    def run(uow: Any) -> dict[str, Any]:
        ports, unknown, digest = svc.set_ports(uow, ctx, host, body)
        return {"ports": [views.port(p) for p in ports], "unknown": unknown,
                "ports_digest": digest}

    return await write(request, run)


def _number(name: str, value: str | None, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {value!r}") from None


async def _until_disconnect(request: Request) -> None:
    """Returns once the client has closed its connection (a long-poll then stops)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get("/taas-agents/{host}/desired-state")
async def desired_state(host: str, request: Request, ctx: Caller) -> Response:
    """Long-poll: answer when the host's revision differs from ?revision=, or at the timeout
    (services/watch.py); the answer is always the host's full state."""
    svc = _agents(request)
    svc.authorize(ctx, host)
    params = request.query_params
    known = _number("revision", params.get("revision"), None)
    wait = _number("timeout", params.get("timeout"), watch.DEFAULT_WAIT)
    assert wait is not None
    if not 0 <= wait <= watch.MAX_WAIT:
        raise InvalidInput(f"timeout must be within 0..{watch.MAX_WAIT:g} seconds")
    state = request.app.state
    notifier, revisions = state.notifier, state.known_revisions
    svc.watch_started(host)
    try:
        answer = await watch.wait_for_change(
            notifier, host, known, wait, state.settings.revision_poll_interval,
            lambda: read(request, lambda s: svc.revision(s, ctx, host)),
            lambda: _until_disconnect(request), revisions)
    finally:
        svc.watch_ended(host)
    if not answer:
        return Response(status_code=204)  # nobody listens any more
    event = notifier.current(host)  # before the read: what it reads is known until it fires
    revision, body = await read(request, lambda s: svc.watch_answer(s, host))
    revisions.put(host, event, revision)  # the agent's next long-poll needs no read
    return Response(body, media_type="application/json")


@router.put("/taas-agents/{host}/report")
async def report(host: str, request: Request, ctx: Caller) -> Any:
    body = await json_body(request)
    svc = _agents(request)
    result = await write(request, lambda uow: svc.report(uow, ctx, host, body))
    return {"report": result}


AGENT_FILTERS = {"id": ("id", str), "host": ("host", str)}


@router.get("/agents")
async def list_agents(request: Request, ctx: Caller) -> Any:
    q = list_query(request, AGENT_FILTERS)
    svc = _agents(request)

    def run(session: Any) -> Any:
        rows, more = svc.list_agents(session, ctx, q)
        return [views.agent(r, svc.is_alive(r)) for r in rows], more

    items, more = await read(request, run)
    out: dict[str, Any] = {"agents": [select_fields(request, i) for i in items]}
    out.update(page_links(request, "agents", q, items, more))
    return out


@router.get("/agents/{id_}")
async def get_agent(id_: str, request: Request, ctx: Caller) -> Any:
    svc = _agents(request)

    def run(session: Any) -> Any:
        row = svc.get_agent(session, ctx, id_)
        return views.agent(row, svc.is_alive(row))

    return {"agent": select_fields(request, await read(request, run))}


@router.delete("/agents/{id_}", status_code=204)
async def delete_agent(id_: str, request: Request, ctx: Caller) -> Response:
    svc = _agents(request)
    await write(request, lambda uow: svc.delete_agent(uow, ctx, id_))
    return Response(status_code=204)
