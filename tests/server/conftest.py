"""Fixtures of the server tests: real taas-server processes on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taas.testing.postgres import create_database, run_postgres
from taas.testing.server import ServerProcess, run_server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """One PostgreSQL cluster per test session; each server gets its own database."""
    with run_postgres(dbname="taas_session") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def fresh_db_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (run_server makes a temp file), else a new PostgreSQL database."""
    if kind == "sqlite":
        return None
    cluster = request.getfixturevalue("pg_cluster")
    return create_database(cluster, f"taas_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def db_url(db_kind: str, request: pytest.FixtureRequest) -> str | None:
    """A database of its own for a module (modules with special server settings use it)."""
    return fresh_db_url(db_kind, request)


@pytest.fixture(scope="session")
def server(db_kind: str, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One shared server per database kind for the modules that need no special settings
    (their tests create what they use and never depend on global counts)."""
    with run_server(db_url=fresh_db_url(db_kind, request), service_driver=FAULT_DRIVER) as srv:
        yield srv


FAULT_DRIVER = "taas.server.drivers.testing:FaultInjectingDriver"


@pytest.fixture(scope="session")
def keystone_server(db_kind: str, keystone: Any,
                    request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Like `server`, but callers authenticate with tokens of the session's real Keystone."""
    from taas.testing.keystone import run_keystone_server

    with run_keystone_server(keystone, fresh_db_url(db_kind, request),
                             service_driver=FAULT_DRIVER) as srv:
        yield srv


class Api:
    """Thin helpers over a server: one httpx client per identity, inventory factories."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.clients: dict[str, httpx.Client] = {}

    def __call__(self, who: str) -> httpx.Client:
        if who not in self.clients:
            self.clients[who] = self.server.client(who)
        return self.clients[who]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def network(self, project: str = "project-a", **attrs: Any) -> dict[str, Any]:
        r = self("admin").post("/v2.0/networks", json={"network": {
            "project_id": self.server.project(project), **attrs}})
        assert r.status_code == 201, r.text
        return r.json()["network"]

    def port(self, project: str = "project-a", network_id: str | None = None,
             **attrs: Any) -> dict[str, Any]:
        if network_id is None:
            network_id = self.network(project)["id"]
        r = self("admin").post("/v2.0/ports", json={"port": {
            "network_id": network_id, "project_id": self.server.project(project), **attrs}})
        assert r.status_code == 201, r.text
        return r.json()["port"]

    def tap_service(self, who: str = "a-member", port_id: str | None = None,
                    project: str = "project-a", **attrs: Any) -> dict[str, Any]:
        port_id = port_id or self.port(project)["id"]
        r = self(who).post("/v2.0/taas/tap_services",
                           json={"tap_service": {"port_id": port_id, **attrs}})
        assert r.status_code == 201, r.text
        return r.json()["tap_service"]

    def tap_flow(self, service: dict[str, Any], who: str = "a-member",
                 source_port: str | None = None, **attrs: Any) -> dict[str, Any]:
        source_port = source_port or self.port(service["project_id"])["id"]
        body = {"tap_service_id": service["id"], "source_port": source_port,
                "direction": "BOTH", **attrs}
        r = self(who).post("/v2.0/taas/tap_flows", json={"tap_flow": body})
        assert r.status_code == 201, r.text
        return r.json()["tap_flow"]

    def tap_mirror(self, who: str = "a-member", port_id: str | None = None,
                   project: str = "project-a", **attrs: Any) -> dict[str, Any]:
        port_id = port_id or self.port(project)["id"]
        body = {"port_id": port_id, "remote_ip": "192.0.2.10", "mirror_type": "gre",
                "directions": {"IN": fresh_tunnel_id()}, **attrs}
        r = self(who).post("/v2.0/taas/tap_mirrors", json={"tap_mirror": body})
        assert r.status_code == 201, r.text
        return r.json()["tap_mirror"]


_tunnel = iter(range(1000, 2**31))


def fresh_tunnel_id() -> int:
    return next(_tunnel) + uuid.uuid4().int % 1000 * 1_000_000


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[Api]:  # module scope: follows module overrides
    helper = Api(server)
    yield helper
    helper.close()


def neutron_error(resp: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    """Assert a Neutron error body with `status` (and `type_`); its inner dict."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    err = resp.json()["NeutronError"]
    assert set(err) == {"type", "message", "detail"}
    assert err["message"]
    if type_ is not None:
        assert err["type"] == type_, err
    return err
