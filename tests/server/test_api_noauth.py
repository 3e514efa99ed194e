"""auth_strategy=noauth (no token; identity from X-Project-Id/X-Roles, else admin) and that the
default token strategy does not honour those headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from taas.testing.server import ServerProcess, run_server

from .conftest import Api, neutron_error

TS = "/v2.0/taas/tap_services"


@pytest.fixture(scope="module")
def noauth_server(db_url: str | None) -> Iterator[ServerProcess]:
    with run_server(db_url=db_url, auth_strategy="noauth") as srv:
        yield srv


@pytest.fixture(scope="module")
def raw(noauth_server: ServerProcess) -> Iterator[httpx.Client]:
    """A client that sends no identity at all."""
    with httpx.Client(base_url=noauth_server.url, timeout=90) as c:
        yield c


@pytest.fixture(scope="module")
def noauth_api(noauth_server: ServerProcess) -> Iterator[Api]:
    helper = Api(noauth_server)  # identities as X-Project-Id/X-Roles headers
    yield helper
    helper.close()


def test_start_warns_that_every_caller_is_trusted(noauth_server: ServerProcess) -> None:
    log = noauth_server.log()
    assert "auth_strategy=noauth" in log and "trusted" in log and "WARNING" in log


def test_no_token_is_admin_of_project_admin(raw: httpx.Client) -> None:
    r = raw.post("/v2.0/networks", json={"network": {"name": "na-net"}})
    assert r.status_code == 201, r.text  # admin-only call
    net = r.json()["network"]
    assert net["project_id"] == "admin"
    port = raw.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    ts = raw.post(TS, json={"tap_service": {"port_id": port["id"], "name": "na-ts"}})
    assert ts.status_code == 201, ts.text
    assert ts.json()["tap_service"]["project_id"] == "admin"
    assert raw.get("/v2.0/agents").status_code == 200  # admin-only list
    # A token, even a made-up one, is ignored rather than refused.
    r = raw.get(f"{TS}/{ts.json()['tap_service']['id']}", headers={"X-Auth-Token": "notused"})
    assert r.status_code == 200 and r.json()["tap_service"]["name"] == "na-ts"
    assert raw.delete(f"{TS}/{ts.json()['tap_service']['id']}").status_code == 204


def test_headers_make_a_project_member(noauth_api: Api, raw: httpx.Client) -> None:
    mine = noauth_api.tap_service("a-member", name="na-a")  # X-Project-Id: project-a, member
    assert mine["project_id"] == "project-a"
    theirs = noauth_api.tap_service("b-member", project="project-b", name="na-b")
    a = {"X-Project-Id": "project-a", "X-Roles": "member", "X-Auth-Token": "ignored"}
    # Another project's resource does not exist for a member of project-a.
    neutron_error(raw.get(f"{TS}/{theirs['id']}", headers=a), 404, "TapServiceNotFound")
    neutron_error(raw.put(f"{TS}/{theirs['id']}", json={"tap_service": {"name": "x"}},
                          headers=a), 404)
    assert theirs["id"] not in {s["id"] for s in raw.get(TS, headers=a).json()["tap_services"]}
    assert mine["id"] in {s["id"] for s in raw.get(TS, headers=a).json()["tap_services"]}
    # Naming another project is 403; so are admin-only calls.
    port = noauth_api.port("project-a")
    neutron_error(raw.post(TS, headers=a, json={"tap_service": {
        "port_id": port["id"], "project_id": "project-b"}}), 403, "PolicyNotAuthorized")
    # (A member may create networks, as in Neutron, but not choose provider attributes.)
    neutron_error(raw.post("/v2.0/networks", json={"network": {
        "provider:segmentation_id": 4242}}, headers=a), 403, "PolicyNotAuthorized")
    neutron_error(raw.get("/v2.0/agents", headers=a), 403)
    # A project without roles is a member of it; a reader may not write.
    only_project = {"X-Project-Id": "project-a"}
    assert raw.get(f"{TS}/{mine['id']}", headers=only_project).status_code == 200
    reader = {"X-Project-Id": "project-a", "X-Roles": "reader"}
    assert raw.get(f"{TS}/{mine['id']}", headers=reader).status_code == 200
    neutron_error(raw.delete(f"{TS}/{mine['id']}", headers=reader), 403)
    # Unknown roles grant nothing.
    neutron_error(raw.get(TS, headers={"X-Project-Id": "project-a", "X-Roles": "_member_"}), 403)
    # The admin (no headers) sees both.
    ids = {s["id"] for s in raw.get(TS).json()["tap_services"]}
    assert {mine["id"], theirs["id"]} <= ids


def test_agent_api_works_without_a_token(raw: httpx.Client) -> None:
    host = f"na-host-{uuid.uuid4().hex[:8]}"
    r = raw.put(f"/v2.0/taas-agents/{host}", json={"agent": {"tunnel_ip": "192.0.2.77"}})
    assert r.status_code == 200, r.text
    r = raw.get(f"/v2.0/taas-agents/{host}/desired-state")
    assert r.status_code == 200 and r.json()["desired_state"]["host"] == host
    # A service identity claimed by headers is an agent, not a tenant.
    svc = {"X-Project-Id": "service-project", "X-Roles": "service"}
    assert raw.get(f"/v2.0/taas-agents/{host}/desired-state", headers=svc).status_code == 200
    neutron_error(raw.get(TS, headers=svc), 403)
    member = {"X-Project-Id": "project-a", "X-Roles": "member"}
    neutron_error(raw.get(f"/v2.0/taas-agents/{host}/desired-state", headers=member), 403)


@pytest.mark.parametrize("headers", [
    {},
    {"X-Auth-Token": "notused"},
    {"X-Project-Id": "admin", "X-Roles": "admin"},
    {"X-Auth-Token": "bogus", "X-Project-Id": "project-a", "X-Roles": "member"},
])
def test_token_strategy_ignores_identity_headers(api: Api, headers: dict[str, str]) -> None:
    """Default strategy: nothing changes; headers claiming an identity are not a token."""
    with httpx.Client(base_url=api.server.url, timeout=90) as c:
        neutron_error(c.get(TS, headers=headers), 401, "HTTPUnauthorized")
        neutron_error(c.get("/v2.0/taas-agents/h/desired-state", headers=headers), 401)


def test_token_strategy_headers_do_not_raise_privileges(api: Api) -> None:
    theirs = api.tap_service("b-member", project="project-b")
    claim = {**api.server.headers("a-member"), "X-Project-Id": "project-b", "X-Roles": "admin"}
    with httpx.Client(base_url=api.server.url, timeout=90) as c:
        neutron_error(c.get(f"{TS}/{theirs['id']}", headers=claim), 404)
        neutron_error(c.get("/v2.0/agents", headers=claim), 403)
