"""Stopping taas-server with a pending long-poll is prompt; starting on a current schema skips
the migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from taas.server.db.migrations import HEAD, is_current, script_head, upgrade
from taas.testing.server import free_port, run_server
from taas.testing.wait import wait_until

from .conftest import fresh_db_url

ROOT = Path(__file__).resolve().parents[2]


def waiting_long_polls(admin: httpx.Client) -> float:
    for family in text_string_to_metric_families(admin.get("/metrics").text):
        if family.name == "taas_agent_long_polls_waiting":
            return family.samples[0].value
    raise AssertionError("/metrics has no taas_agent_long_polls_waiting")


@pytest.mark.parametrize("db_kind,sig", [("sqlite", signal.SIGTERM),
                                         ("postgres", signal.SIGTERM),  # LISTEN thread too
                                         ("sqlite", signal.SIGINT)])
def test_stop_with_a_pending_long_poll_is_prompt(db_kind: str, request: pytest.FixtureRequest,
                                                 sig: signal.Signals) -> None:
    with run_server(db_url=fresh_db_url(db_kind, request)) as srv:
        agent = srv.client("service")
        assert agent.put("/v2.0/taas-agents/sd-h1",
                         json={"agent": {"tunnel_ip": "192.0.2.1"}}).status_code == 200
        revision = agent.get("/v2.0/taas-agents/sd-h1/desired-state").json()[
            "desired_state"]["revision"]
        result: dict[str, Any] = {}

        def long_poll() -> None:
            t0 = time.monotonic()
            try:
                r = agent.get("/v2.0/taas-agents/sd-h1/desired-state",
                              params={"revision": revision, "timeout": 60})
                result["status"] = r.status_code
                result["revision"] = r.json()["desired_state"]["revision"]
            except Exception as exc:  # noqa: BLE001 - a closed connection is acceptable
                result["error"] = exc
            result["took"] = time.monotonic() - t0

        poller = threading.Thread(target=long_poll, daemon=True)
        poller.start()
        # The sentinel: the server itself counts the long-poll as waiting (not a sleep).
        admin = srv.client("admin")
        wait_until(lambda: waiting_long_polls(admin) >= 1, timeout=30,
                   what="the long-poll waiting on the server")
        admin.close()
        assert poller.is_alive() and not result
        proc = srv.proc
        assert proc is not None
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=3)  # raises TimeoutExpired if the long-poll holds the server up
        stopped = time.monotonic() - t0
        poller.join(timeout=3)
        agent.close()
        assert not poller.is_alive()
        assert stopped < 3, stopped
        # Answered with the current state, long before its 60 s (not merely cut off by
        # uvicorn's graceful-shutdown timeout, which would close it without an answer).
        assert result.get("status") == 200, result
        assert result["revision"] == revision
        assert result["took"] < 4, result


def test_schema_head_constant_matches_alembic(tmp_path: Any) -> None:
    assert script_head() == HEAD
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        assert not is_current(engine)  # no schema yet
        upgrade(engine, "0001")
        assert not is_current(engine)  # behind
        upgrade(engine)
        assert is_current(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
        assert not is_current(engine)  # unknown (newer) revision: Alembic decides
    finally:
        engine.dispose()


def _start_and_stop(db: str, tmp_path: Path) -> tuple[float, str]:
    """Start taas-server at log level info; (seconds until GET / answers, its log)."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "taas.server.cli", "--db-url", db,
                                 "--port", str(port), "--log-level", "info"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        while time.monotonic() - t0 < 30 and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return took, log.read_text(errors="replace")


def test_start_on_a_current_schema_skips_alembic(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.sqlite'}"
    _, first = _start_and_stop(db, tmp_path)
    assert "alembic.runtime.migration" in first and "Uvicorn running" in first
    took, again = _start_and_stop(db, tmp_path)
    assert "Uvicorn running" in again, again
    assert "alembic" not in again  # the schema was current: no Alembic at all
    assert took < 15, took  # generous: the machine is shared
