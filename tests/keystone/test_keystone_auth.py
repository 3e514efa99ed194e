"""auth_strategy keystone against the session's real Keystone: identity mapping, 401s, the
validation cache and its TTL, the agent API's service role, Keystone being unreachable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taas.testing.keystone import SERVICE_USER, Keystone, run_keystone_server
from taas.testing.server import ServerProcess, free_port, run_server
from taas.testing.wait import wait_until

TS = "/v2.0/taas/tap_services"


@pytest.fixture(scope="module")
def server(keystone: Keystone) -> Iterator[ServerProcess]:
    with run_keystone_server(keystone, keystone_cache_ttl=1) as srv:
        yield srv


def get(srv: ServerProcess, path: str, token: str | None) -> httpx.Response:
    headers = {"X-Auth-Token": token} if token is not None else {}
    return httpx.get(srv.url + path, headers=headers, timeout=30)


def test_token_maps_project_roles_and_user(server: ServerProcess, keystone: Keystone) -> None:
    admin = server.client("admin")
    r = admin.post("/v2.0/networks", json={"network": {
        "project_id": keystone.project_id("project-a")}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]
    port = admin.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    with server.client("a-member") as member:
        ts = member.post(TS, json={"tap_service": {"port_id": port["id"]}})
        assert ts.status_code == 201, ts.text
        # The project is the token's Keystone project id, not a name.
        assert ts.json()["tap_service"]["project_id"] == keystone.project_id("project-a")
    with server.client("a-reader") as reader:
        assert reader.get(f"{TS}/{ts.json()['tap_service']['id']}").status_code == 200
        assert reader.delete(f"{TS}/{ts.json()['tap_service']['id']}").status_code == 403
    with server.client("b-member") as other:
        assert other.get(f"{TS}/{ts.json()['tap_service']['id']}").status_code == 404
    admin.close()


def test_missing_or_bad_token_is_401(server: ServerProcess) -> None:
    for token in (None, "", "not-a-keystone-token", "gAAAAA" + "x" * 180):
        r = get(server, TS, token)
        assert r.status_code == 401, (token, r.text)
        assert r.json()["NeutronError"]["type"] == "HTTPUnauthorized"
    assert get(server, "/", None).status_code == 200  # discovery needs no token


def test_unscoped_token_reads_nothing(server: ServerProcess, keystone: Keystone) -> None:
    user = keystone.users["a-member"]
    token, _ = keystone.issue_token(user.name, user.password, None)
    r = get(server, TS, token)
    assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"


def test_revoked_token_stops_working_within_the_ttl(server: ServerProcess,
                                                    keystone: Keystone) -> None:
    token = keystone.token("b-member")
    assert get(server, TS, token).status_code == 200  # validated, now cached for 1 s
    keystone.revoke(token)
    wait_until(lambda: get(server, TS, token).status_code == 401, timeout=15,
               what="the revoked token refused")


def test_agent_api_takes_a_service_role_user(server: ServerProcess, keystone: Keystone) -> None:
    body = {"agent": {"tunnel_ip": "10.7.7.7"}}
    path = "/v2.0/taas-agents/ks-host-1"
    svc = keystone.users[SERVICE_USER]
    agent_token, _ = keystone.issue_token(svc.name, svc.password, svc.project)
    r = httpx.put(server.url + path, json=body, headers={"X-Auth-Token": agent_token})
    assert r.status_code == 200, r.text
    r = httpx.put(server.url + path, json=body,
                  headers={"X-Auth-Token": server.tokens["a-member"]})
    assert r.status_code == 403
    # The service role is for agents: the tenant API refuses it.
    assert get(server, TS, agent_token).status_code == 403


def test_keystone_unreachable_is_503_without_internals(tmp_path: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v3"
    with run_server(auth_strategy="keystone", keystone_auth_url=dead, keystone_username="x",
                    keystone_password="secret-pw", keystone_timeout=2) as srv:
        r = get(srv, TS, "some-token")
        assert r.status_code == 503
        err = r.json()["NeutronError"]
        assert err["type"] == "HTTPServiceUnavailable"
        assert "127.0.0.1" not in r.text and "secret-pw" not in r.text


def test_wrong_service_credentials_are_503(keystone: Keystone) -> None:
    with run_server(auth_strategy="keystone", keystone_auth_url=keystone.auth_url,
                    keystone_username=SERVICE_USER, keystone_password="wrong",
                    keystone_project_name="service") as srv:
        r = get(srv, TS, keystone.token("a-member"))
        assert r.status_code == 503, r.text
