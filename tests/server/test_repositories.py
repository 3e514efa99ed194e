"""Repositories and migrations on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from taas.server.db.migrations import upgrade
from taas.server.db.models import Network, TapService
from taas.server.db.repositories import (
    ListQuery,
    NetworkRepository,
    RevisionRepository,
    TapServiceRepository,
)
from taas.server.db.session import Database


@pytest.fixture(scope="module")
def db(db_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = db_url or f"sqlite:///{Path(tmp_path_factory.mktemp('repo')) / 'taas.sqlite'}"
    database = Database(url)
    upgrade(database.engine)
    upgrade(database.engine)  # idempotent
    yield database
    database.dispose()


def test_schema_is_migrated(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"tap_services", "tap_flows", "tap_mirrors", "ports", "networks", "agents",
            "revision", "alembic_version"} <= tables


def _service(taas_id: int) -> TapService:
    return TapService(id=str(uuid.uuid4()), project_id="p", name="", description="",
                      port_id=str(uuid.uuid4()), status="DOWN", taas_id=taas_id,
                      created_at=datetime(2026, 1, 1))


def test_taas_id_unique_insert_reports_conflict_without_breaking_the_transaction(
        db: Database) -> None:
    with db.write() as uow:
        repo = TapServiceRepository(uow.session)
        assert repo.insert_with_taas_id(_service(100))
        assert not repo.insert_with_taas_id(_service(100))
        assert repo.insert_with_taas_id(_service(101))  # the transaction is still usable
    with db.read() as session:
        assert {100, 101} <= TapServiceRepository(session).used_taas_ids()


def test_host_revisions_bump_once_per_transaction_and_roll_back(db: Database) -> None:
    a, b, c = (f"rev-{uuid.uuid4().hex[:6]}-{i}" for i in range(3))
    with db.read() as session:
        start = RevisionRepository(session).current()
    with db.write() as uow:
        repo = RevisionRepository(uow.session)
        first = repo.bump_hosts([a])
        # One value per transaction, whatever the number of changes in it.
        assert repo.bump_hosts([a, b]) == first > start
    with pytest.raises(RuntimeError), db.write() as uow:
        RevisionRepository(uow.session).bump_hosts([c])
        raise RuntimeError("abort")
    with db.read() as session:
        repo = RevisionRepository(session)
        assert repo.of_hosts([a, b, c]) == {a: first, b: first, c: 0}
        assert repo.of_host(c) == 0
    with db.write() as uow:
        later = RevisionRepository(uow.session).bump_hosts([b])
    with db.read() as session:  # only the host it names moves
        assert RevisionRepository(session).of_hosts([a, b]) == {a: first, b: later}
        assert later > first


def test_list_sort_marker_and_pages(db: Database) -> None:
    tag = uuid.uuid4().hex[:6]
    base = datetime(2026, 1, 1)
    with db.write() as uow:
        repo = NetworkRepository(uow.session)
        for i in range(5):
            repo.add(Network(id=f"{tag}-{i}", project_id=tag, name=f"n{4 - i}", description="",
                             segmentation_id=50_000 + int(tag, 16) % 10_000 * 10 + i,
                             admin_state_up=True, created_at=base + timedelta(seconds=i)))
    with db.read() as session:
        repo = NetworkRepository(session)
        rows, more = repo.list(ListQuery(project_id=tag, limit=2))
        assert [r.id for r in rows] == [f"{tag}-0", f"{tag}-1"] and more
        rows, more = repo.list(ListQuery(project_id=tag, limit=2, marker=f"{tag}-3"))
        assert [r.id for r in rows] == [f"{tag}-4"] and not more
        rows, _ = repo.list(ListQuery(project_id=tag, sort=[("name", "asc")]))
        assert [r.name for r in rows] == ["n0", "n1", "n2", "n3", "n4"]
        rows, more = repo.list(ListQuery(project_id=tag, limit=2, marker=f"{tag}-2",
                                         page_reverse=True))
        assert [r.id for r in rows] == [f"{tag}-0", f"{tag}-1"] and not more
        rows, _ = repo.list(ListQuery(filters={"name": ["n1", "n3"]}, project_id=tag))
        assert sorted(r.name for r in rows) == ["n1", "n3"]
