"""The FastAPI application: wiring of settings, database, driver, services and routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from taas.server.api import agents, counters, meta, openapi, quotas, resources
from taas.server.api import inventory as inventory_api
from taas.server.api.auth import TokenStore, build_authenticator
from taas.server.api.common import MAX_BODY
from taas.server.api.errors import install_error_handlers
from taas.server.api.fastpath import AgentFastPath
from taas.server.api.metrics import Metrics, RequestMetrics
from taas.server.api.metrics import router as metrics_router
from taas.server.api.middleware import BodyLimit, CatchAll, HeadAsGet, RequestId
from taas.server.config import Settings
from taas.server.db.session import Database
from taas.server.drivers.base import load_driver
from taas.server.drivers.notifier import PostgresListener, RevisionNotifier
from taas.server.policy import Policy
from taas.server.ports import build_inventory
from taas.server.services.agents import Agents
from taas.server.services.filters import TapFilters
from taas.server.services.quotas import Quotas
from taas.server.services.tap import TapResources
from taas.server.services.watch import KnownRevisions

LOG = logging.getLogger(__name__)


def create_app(settings: Settings, tokens: TokenStore | None = None) -> FastAPI:
    """Build the app; the schema must already be migrated (taas-server does it at start)."""
    db = Database(settings.db_url, settings.sqlite_busy_timeout)
    notifier = RevisionNotifier()
    driver = load_driver(settings, notifier, db.is_postgres)
    taps = TapResources(settings, driver, Quotas(settings))
    listener = PostgresListener(settings.db_url, notifier) if db.is_postgres else None
    inventory = build_inventory(settings, driver, taps, db)
    metrics = Metrics(db, notifier)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())
        if listener:
            listener.start()
        inventory.start()  # a backend that follows an external source (Neutron)
        if settings.metrics_port:
            metrics.start_listener(settings.host, settings.metrics_port)
        try:
            yield
        finally:
            metrics.stop_listener()
            inventory.stop()
            if listener:
                listener.stop()
            db.dispose()

    app = FastAPI(title="taas-server", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.db = db
    app.state.notifier = notifier
    app.state.driver = driver
    app.state.authenticator = build_authenticator(settings, tokens)
    app.state.policy = Policy(settings.policy_file)
    app.state.taps = taps
    app.state.quotas = taps.quotas
    app.state.tap_filters = TapFilters(taps)
    app.state.inventory = inventory
    app.state.agents = Agents(settings, driver)
    app.state.metrics = metrics
    app.state.known_revisions = KnownRevisions(notifier)
    install_error_handlers(app)
    # Outermost last: BodyLimit sees the request first, CatchAll wraps the routes (and the
    # agents' heartbeats and long-polls, which AgentFastPath serves without FastAPI).
    app.add_middleware(AgentFastPath)
    app.add_middleware(CatchAll)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestId)
    app.include_router(meta.router)
    app.include_router(resources.router)
    app.include_router(inventory_api.router)
    app.include_router(agents.router)
    app.include_router(quotas.router)
    app.include_router(counters.router)
    app.include_router(metrics_router)
    openapi.install(app)
    return app
