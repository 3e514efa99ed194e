"""Wake long-polling agents when the desired-state revision changes.

In one process: an asyncio event replaced at each change (thread-safe wake from the
threadpool). Across replicas sharing PostgreSQL: the revision bump issues ``pg_notify`` in its
transaction and every replica LISTENs on a dedicated connection in a thread. With several
replicas on a database without LISTEN/NOTIFY one would fall back to polling the revision; the
long-poll loop re-reads the revision every ``revision_poll_interval`` seconds for that reason
(cheap: one indexed row).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy.engine import make_url

LOG = logging.getLogger(__name__)
CHANNEL = "taas_revision"


class RevisionNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        # Set when the server stops: long-polls answer at once instead of waiting.
        self.closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next change sets; take it *before* reading the revision."""
        assert self._event is not None, "notifier not bound to a loop"
        return self._event

    def wake(self) -> None:
        """Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def close(self) -> None:
        """The server is stopping: wake every waiter for good (safe from a signal handler)."""
        self.closing = True
        self.wake()

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()


class PostgresListener:
    """LISTEN on the revision channel in a thread and wake the local notifier."""

    def __init__(self, db_url: str, notifier: RevisionNotifier) -> None:
        url = make_url(db_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._notifier = notifier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        import psycopg  # here: a SQLite server never needs it (start-up time)

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # A change may have happened while (re)connecting.
                    self._notifier.wake()
                    while not self._stop.is_set():
                        # Short timeout: stop() is noticed quickly (an idle select, no query).
                        for _ in conn.notifies(timeout=0.25):
                            self._notifier.wake()
            except Exception:  # noqa: BLE001 - keep listening through database restarts
                LOG.exception("PostgreSQL LISTEN failed; retrying")
                self._stop.wait(2.0)
