"""The tests' Keystone: taas.lab.keystone's Keystone on a free loopback port with a throwaway
PostgreSQL and temp dir (everything goes at exit), its users, and taas-server behind it.

    with run_keystone() as ks:
        populate(ks)
        with run_keystone_server(ks) as srv: ...
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taas.lab.keystone import (  # noqa: F401 - re-exported for the tests
    DOMAIN,
    REGION,
    Keystone,
    KeystoneError,
    User,
    keystone_available,
)
from taas.testing.server import free_port


@contextmanager
def run_keystone() -> Iterator[Keystone]:
    """A bootstrapped Keystone (admin user, project `admin`, roles admin/member/reader and
    `service`) on its own PostgreSQL cluster; removed with its files at exit."""
    from taas.testing.postgres import run_postgres

    with run_postgres(dbname="keystone") as pg_url:
        # Debian's SQLAlchemy 1.4 + psycopg2, not the tests' psycopg 3.
        db_url = pg_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        ks = Keystone(workdir=Path(tempfile.mkdtemp(prefix="taas-test-keystone-")),
                      port=free_port(), db_url=db_url)
        with _running(ks):
            yield ks


@contextmanager
def _running(ks: Keystone) -> Iterator[Keystone]:
    try:
        ks.setup()
        ks.start()
        ks.role_id("service")
        yield ks
    finally:
        ks.stop()
        shutil.rmtree(ks.workdir, ignore_errors=True)


SERVICE_USER = "taas"  # taas-server's own Keystone user (validates the callers' tokens)


def populate(ks: Keystone, identities: dict[str, tuple[str, list[str]]] | None = None) -> None:
    """Users for the test identities (name -> (project, roles); default: the ones of
    taas.testing.server) and taas-server's service user in project `service`."""
    from taas.testing.server import DEFAULT_IDENTITIES

    for name, (project, roles) in (identities or DEFAULT_IDENTITIES).items():
        if name == "admin":
            # The bootstrap admin (project "admin") stands for the cloud admin.
            ks.users["admin"] = User("admin", ks.admin_password, "admin", ["admin"])
            ks.project_id("admin")
            continue
        ks.add_user(name, project, roles)
    ks.add_user(SERVICE_USER, "service", ["service"])


@contextmanager
def run_keystone_server(ks: Keystone, db_url: str | None = None,
                        **config: Any) -> Iterator[Any]:
    """A taas-server with auth_strategy keystone against `ks`; `.tokens` are Keystone tokens
    of the users populate() made and `.projects` maps project names to Keystone ids."""
    from taas.testing.server import run_server

    svc = ks.users[SERVICE_USER]
    settings = {"auth_strategy": "keystone", "keystone_auth_url": ks.auth_url,
                "keystone_username": svc.name, "keystone_password": svc.password,
                "keystone_project_name": svc.project,
                # A loaded test machine may make Keystone slow; a timeout there is no finding.
                "keystone_timeout": 120, **config}
    with run_server(db_url=db_url, **settings) as srv:
        srv.tokens = {name: ks.token(name) for name in ks.users if name != SERVICE_USER}
        srv.projects = dict(ks.projects)
        yield srv
