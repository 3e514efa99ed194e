"""pytest fixtures over taas.testing: `pytest_plugins = ["taas.testing.fixtures"]`.

- ``taas_server``: a module-scoped taas-server on a temp SQLite file.
- ``taas_postgres_url``: a session-scoped throwaway PostgreSQL cluster's database URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taas.testing.postgres import run_postgres
from taas.testing.server import ServerProcess, run_server


@pytest.fixture(scope="module")
def taas_server() -> Iterator[ServerProcess]:
    with run_server() as server:
        yield server


@pytest.fixture(scope="session")
def taas_postgres_url() -> Iterator[str]:
    with run_postgres() as url:
        yield url
