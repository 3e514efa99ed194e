"""Engine, sessions and units of work.

SQLite needs help with concurrent writers: foreign keys and WAL are switched on per connection,
a busy timeout absorbs short waits, and writes in this process are serialized by a lock (SQLite
allows one writer at a time anyway; waiting on a lock beats failing with "database is locked").
One SQLite file serves one taas-server process; replicas share PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

LOG = logging.getLogger(__name__)


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    if url.startswith("sqlite"):
        # No pre-ping: a file has no server to lose the connection. A pool as large as the
        # threadpool: overflow connections would be opened (and their pragmas run) per request.
        in_memory = make_url(url).database in (None, "", ":memory:")  # a singleton pool
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout},
            **({} if in_memory else {"pool_size": 40, "max_overflow": 10}),
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # On the driver's connection: through SQLAlchemy's execution path, this BEGIN
            # cost as much as the query of a cheap read (every read session begins).
            conn.connection.driver_connection.execute("BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """The engine plus the units of work built on it."""

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout)
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; nothing is committed (closing rolls the connection back)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[UnitOfWork]:
        """A unit of work committed on success; post-commit callbacks run after the commit."""
        lock = self._write_lock if self.is_sqlite else None
        if lock:
            lock.acquire()
        try:
            with self._sessions() as session:
                uow = UnitOfWork(session)
                try:
                    yield uow
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if lock:
                lock.release()
        self._run_after_commit(uow)

    def _run_after_commit(self, uow: UnitOfWork) -> None:
        """Run post-commit actions; if one fails, undo the whole unit and re-raise."""
        callbacks, undos = uow.take_after_commit()
        error: Exception | None = None
        for fn in callbacks:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below after the undo
                LOG.exception("post-commit action failed")
                error = error or exc
        if error is None:
            return
        for undo in undos:
            try:
                with self.write() as undo_uow:
                    undo(undo_uow)
            except Exception:  # noqa: BLE001 - report the original failure
                LOG.exception("undo after a failed post-commit action failed")
        raise error

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """One transaction; services add work and post-commit actions, the caller commits."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], None]] = []
        self._undo: list[Callable[[UnitOfWork], None]] = []

    def after_commit(
        self, fn: Callable[[], None], undo: Callable[[UnitOfWork], None] | None = None
    ) -> None:
        """Run `fn` after the commit; should any such action fail, every `undo` runs in a new
        unit of work and the failure is re-raised."""
        self._after_commit.append(fn)
        if undo is not None:
            self._undo.append(undo)

    def take_after_commit(
        self,
    ) -> tuple[list[Callable[[], None]], list[Callable[[UnitOfWork], None]]]:
        callbacks, undos = self._after_commit, self._undo
        self._after_commit, self._undo = [], []
        return callbacks, undos
