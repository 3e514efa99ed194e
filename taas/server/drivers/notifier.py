"""Wake the long-polls of the hosts whose desired state changed, and only those.

In one process: one asyncio event per host with a waiting long-poll, replaced at each wake-up
(thread-safe wake from the threadpool). Across replicas sharing PostgreSQL: the transaction that
bumps hosts' revisions issues ``pg_notify`` with their names (delivered at commit) and every
replica LISTENs on a dedicated connection in a thread, waking its local waiters of those hosts.
Both paths are reliable, so the long-poll's safety re-read of the revision can be rare
(``revision_poll_interval``, by default the long-poll timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable

from sqlalchemy.engine import make_url

from taas.server.db.repositories import NOTIFY_ALL

LOG = logging.getLogger(__name__)
CHANNEL = "taas_revision"


class RevisionNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        # Set when the server stops: long-polls answer at once instead of waiting.
        self.closing = False
        self.wakeups = 0  # waiters woken, for tests and the benchmark
        self.waiting = 0  # long-polls waiting now in this process (/metrics)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events = {}

    def current(self, host: str) -> asyncio.Event:
        """The event the next change of `host` sets; take it *before* reading the revision.
        Loop thread only."""
        event = self._events.get(host)
        if event is None:
            event = self._events[host] = asyncio.Event()
        return event

    def wake(self, hosts: Iterable[str] | None = None) -> None:
        """Wake the waiters of `hosts` (None: every waiter). Safe from any thread."""
        targets = None if hosts is None else frozenset(hosts)
        if targets == frozenset():
            return
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._fire, targets)
            except RuntimeError:  # the loop closed meanwhile (shutdown)
                pass

    def close(self) -> None:
        """The server is stopping: wake every waiter for good (safe from a signal handler)."""
        self.closing = True
        self.wake()

    def _fire(self, hosts: frozenset[str] | None) -> None:
        # Popping the event: the next waiter of that host makes a fresh one, and hosts nobody
        # waits for keep no entry.
        names = list(self._events) if hosts is None else [h for h in hosts if h in self._events]
        for host in names:
            self._events.pop(host).set()
            self.wakeups += 1


def parse_payload(payload: str) -> list[str] | None:
    """Host names of a NOTIFY payload; None means every host."""
    if payload == NOTIFY_ALL:
        return None
    try:
        hosts = json.loads(payload)
    except ValueError:
        return None  # not ours, or an older replica's revision number: wake everyone
    if not isinstance(hosts, list):
        return None
    return [h for h in hosts if isinstance(h, str)]


class PostgresListener:
    """LISTEN on the revision channel in a thread and wake the local waiters it names."""

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
                    # Changes may have happened while (re)connecting: everyone re-reads.
                    self._notifier.wake()
                    while not self._stop.is_set():
                        # Short timeout: stop() is noticed quickly (an idle select, no query).
                        for note in conn.notifies(timeout=0.25):
                            self._notifier.wake(parse_payload(note.payload))
            except Exception:  # noqa: BLE001 - keep listening through database restarts
                LOG.exception("PostgreSQL LISTEN failed; retrying")
                self._stop.wait(2.0)
