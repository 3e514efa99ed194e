"""Prometheus: GET /metrics (policy rule get_metrics, admin by default) and, optionally, an
unauthenticated listener (setting metrics_port).

The tap resources' counters and the agents' sync durations are read from the database at
scrape time (a custom collector), so every replica answers the same; only the request
latencies are this process's own (a histogram by route template and method).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from taas.server.api.auth import Caller
from taas.server.db.counters import CounterRepository
from taas.server.db.session import Database
from taas.server.drivers.notifier import RevisionNotifier

LOG = logging.getLogger(__name__)
router = APIRouter()
LABELS = ["project_id", "resource_kind", "resource_id", "direction"]
# (metric, help, kind, counter, packets (0) or bytes (1))
COUNTERS = [
    ("taas_mirrored_packets", "Frames a tap flow copied (after its filter)", "tap_flow",
     "mirrored", 0),
    ("taas_mirrored_bytes", "Bytes of the frames a tap flow copied", "tap_flow", "mirrored", 1),
    ("taas_filtered_packets", "Frames a tap flow's filter skipped", "tap_flow", "filtered", 0),
    ("taas_delivered_packets", "Copies delivered to a tap service's port", "tap_service",
     "delivered", 0),
    ("taas_delivered_bytes", "Bytes of the copies delivered to a tap service's port",
     "tap_service", "delivered", 1),
    ("taas_sent_packets", "Copies a tap mirror direction sent", "tap_mirror", "sent", 0),
    ("taas_sent_bytes", "Bytes of the copies a tap mirror direction sent", "tap_mirror",
     "sent", 1),
    ("taas_dropped_packets", "Copies dropped by a rate limit", None, "dropped", 0),
]


class CountersCollector(Collector):
    """The counters of docs/api.md ("Statistics") and the agents' sync durations, read from
    the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        with self.db.read() as session:
            repo = CounterRepository(session)
            rows = {kind: repo.counted(kind) for kind in ("tap_flow", "tap_service",
                                                          "tap_mirror")}
            syncs = repo.sync_stats()
        for metric, help_, kind, counter, index in COUNTERS:
            family = CounterMetricFamily(metric, help_, labels=LABELS)
            for k in [kind] if kind else list(rows):
                for row in rows[k]:
                    rid, project, doc = row[0], row[1], row[2] or {}
                    totals = doc.get("totals", {})
                    if k == "tap_mirror":
                        for d in sorted(row[3] or {}):
                            value = totals.get(f"{counter}:{d}", [0, 0])[index]
                            family.add_metric([project, k, rid, d], value)
                    else:
                        family.add_metric([project, k, rid, ""],
                                          totals.get(counter, [0, 0])[index])
            yield family
        summary = SummaryMetricFamily(
            "taas_agent_sync_duration_seconds",
            "Agents' convergences that changed something (count and total duration)",
            labels=["host"])
        last = GaugeMetricFamily("taas_agent_last_sync_duration_seconds",
                                 "Duration of an agent's last such convergence", labels=["host"])
        for host, stats in syncs:
            summary.add_metric([host], stats.get("count", 0), stats.get("seconds", 0.0))
            last.add_metric([host], stats.get("last_ms", 0.0) / 1000)
        yield summary
        yield last


class Metrics:
    """One server's registry: the collector above and the request latency histogram."""

    def __init__(self, db: Database, notifier: RevisionNotifier) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CountersCollector(db))
        # Per replica: how many agents are watching this process right now.
        Gauge("taas_agent_long_polls_waiting", "Agent long-polls waiting in this server process",
              registry=self.registry).set_function(lambda: notifier.waiting)
        self.latency = Histogram(
            "taas_http_request_duration_seconds", "API request latency by route and method",
            ["method", "route"], registry=self.registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self._listener: Any = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def start_listener(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self._listener = start_http_server(port, addr=host, registry=self.registry)
        LOG.warning("unauthenticated Prometheus listener on %s:%d", host, port)

    def stop_listener(self) -> None:
        if self._listener is not None:
            server, thread = self._listener
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._listener = None


class RequestMetrics:
    """Times every HTTP request into the histogram, labelled by the route's template
    (``/v2.0/taas/tap_flows/{tap_flow_id}``), never the raw path: unmatched paths are
    ``other``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "other"
            self.metrics.latency.labels(scope["method"], template).observe(
                time.perf_counter() - start)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ctx: Caller) -> Response:
    ctx.require("get_metrics")
    body = await run_in_threadpool(request.app.state.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
