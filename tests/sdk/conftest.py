"""Fixtures of the openstacksdk tests: a real taas-server on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import openstack
import pytest


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    from taas.testing.server import run_server

    with contextlib.ExitStack() as stack:
        db_url = None
        if request.param == "postgres":
            from taas.testing.postgres import run_postgres

            db_url = stack.enter_context(run_postgres())
        yield stack.enter_context(run_server(db_url=db_url))


def connect(server: Any, who: str) -> openstack.connection.Connection:
    """openstacksdk with no Keystone: the token is sent as is to the given endpoint."""
    return openstack.connect(auth_type="admin_token",
                             auth={"endpoint": server.url, "token": server.tokens[who]})


@pytest.fixture(scope="module")
def admin(server: Any) -> openstack.connection.Connection:
    return connect(server, "admin")


@pytest.fixture(scope="module")
def member(server: Any) -> openstack.connection.Connection:
    return connect(server, "a-member")


@pytest.fixture(scope="module")
def other(server: Any) -> openstack.connection.Connection:
    return connect(server, "b-member")
