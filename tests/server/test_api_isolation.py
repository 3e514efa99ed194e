"""Tenant isolation matrix: who may do what to project-a's resources, with the tokens file and
with tokens of a real Keystone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import Api, fresh_tunnel_id

WHO = ["admin", "a-member", "a-reader", "b-member", "service"]
TAP_KINDS = {
    "tap_service": "/v2.0/taas/tap_services",
    "tap_flow": "/v2.0/taas/tap_flows",
    "tap_mirror": "/v2.0/taas/tap_mirrors",
}
INVENTORY = {"network": "/v2.0/networks", "port": "/v2.0/ports"}

# Expected status per operation and caller, for a resource of project-a.
TAP_EXPECT = {
    "get": {"admin": 200, "a-member": 200, "a-reader": 200, "b-member": 404, "service": 403},
    "update": {"admin": 200, "a-member": 200, "a-reader": 403, "b-member": 404, "service": 403},
    "delete": {"admin": 204, "a-member": 204, "a-reader": 403, "b-member": 404, "service": 403},
    "create": {"admin": 201, "a-member": 201, "a-reader": 403, "b-member": 403, "service": 403},
}
# Neutron's default policy: members manage their own project's networks and ports too.
INVENTORY_EXPECT = TAP_EXPECT


@pytest.fixture(scope="module", params=["tokens-file", "keystone"])
def api(request: pytest.FixtureRequest, db_kind: str) -> Iterator[Api]:
    """Every case with the tokens file's identities and with the same ones in Keystone (on
    the database kind `db_kind` the servers use)."""
    server = request.getfixturevalue("server" if request.param == "tokens-file"
                                     else "keystone_server")
    helper = Api(server)
    yield helper
    helper.close()


def _make(api: Api, kind: str) -> dict[str, Any]:
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "tap_service": lambda: api.tap_service(),
        "tap_flow": lambda: api.tap_flow(api.tap_service()),
        "tap_mirror": lambda: api.tap_mirror(),
        "network": lambda: api.network(),
        "port": lambda: api.port(),
    }
    return makers[kind]()


def _create_body(api: Api, kind: str, who: str) -> dict[str, Any]:
    """A valid body for project-a's resources (admin and b-member name the project)."""
    named = {"project_id": api.server.project("project-a")}
    project = named if who in ("admin", "b-member") else {}
    if kind == "tap_service":
        return {"port_id": api.port()["id"], **project}
    if kind == "tap_flow":
        return {"tap_service_id": api.tap_service()["id"], "source_port": api.port()["id"],
                "direction": "IN", **project}
    if kind == "tap_mirror":
        return {"port_id": api.port()["id"], "directions": {"OUT": fresh_tunnel_id()},
                "remote_ip": "198.51.100.7", "mirror_type": "gre", **project}
    if kind == "network":
        return {"name": "iso", **project}
    return {"network_id": api.network()["id"], **project}


CASES = [(kind, path, op, who, TAP_EXPECT[op][who])
         for kind, path in TAP_KINDS.items() for op in TAP_EXPECT for who in WHO]
CASES += [(kind, path, op, who, INVENTORY_EXPECT[op][who])
          for kind, path in INVENTORY.items() for op in INVENTORY_EXPECT for who in WHO]


@pytest.mark.parametrize("kind,path,op,who,expected", CASES)
def test_isolation_matrix(api: Api, kind: str, path: str, op: str, who: str,
                          expected: int) -> None:
    c = api(who)
    if op == "create":
        r = c.post(path, json={kind: _create_body(api, kind, who)})
        assert r.status_code == expected, r.text
        if expected == 201:
            assert r.json()[kind]["project_id"] == api.server.project("project-a")
        return
    res = _make(api, kind)
    url = f"{path}/{res['id']}"
    if op == "get":
        r = c.get(url)
    elif op == "update":
        r = c.put(url, json={kind: {"name": "renamed"}})
    else:
        r = c.delete(url)
    assert r.status_code == expected, r.text
    if expected >= 400:
        assert "NeutronError" in r.json()
        # Nothing changed.
        after = api("admin").get(url).json()[kind]
        assert after["name"] == res["name"]
    # Lists show the resource exactly to those who may read it.
    if op == "get":
        listed = c.get(path)
        if who == "service":
            assert listed.status_code == 403
        else:
            ids = {x["id"] for x in listed.json()[kind + "s"]}
            assert (res["id"] in ids) == (expected == 200)


def test_non_admin_cannot_act_for_another_project(api: Api) -> None:
    port = api.port("project-b")
    a, b = api.server.project("project-a"), api.server.project("project-b")
    r = api("a-member").post("/v2.0/taas/tap_services", json={"tap_service": {
        "port_id": port["id"], "project_id": b}})
    assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    r = api("a-member").post("/v2.0/taas/tap_services", json={"tap_service": {
        "port_id": port["id"], "tenant_id": a, "project_id": b}})
    assert r.status_code == 400


@pytest.mark.parametrize("who,expected", [("admin", 200), ("a-member", 403),
                                          ("a-reader", 403), ("service", 403)])
def test_agents_list_is_admin_only(api: Api, who: str, expected: int) -> None:
    assert api(who).get("/v2.0/agents").status_code == expected


@pytest.mark.parametrize("who,expected", [("service", 200), ("admin", 200), ("a-member", 403),
                                          ("a-reader", 403)])
def test_agent_api_needs_service_or_admin(api: Api, who: str, expected: int) -> None:
    r = api(who).put("/v2.0/taas-agents/iso-host", json={"agent": {"tunnel_ip": "10.9.9.9"}})
    assert r.status_code == expected, r.text
    assert api(who).get("/v2.0/taas-agents/iso-host/desired-state").status_code == expected
