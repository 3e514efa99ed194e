"""/openapi.json describes the API as it answers: schemathesis sends what the document allows
(bounded and derandomized, so the run is deterministic) and checks that nothing is a 5xx and
that every status, content type, header and body is the documented one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taas.testing.server import ServerProcess, run_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def st_server() -> Iterator[ServerProcess]:
    """A server of its own (SQLite): the run creates and deletes whatever it likes. A few
    resources exist from the start, so that lists answer items whose shape is checked too."""
    with run_server() as srv, srv.client("admin") as c:
        srv.seeded = seed(c)  # type: ignore[attr-defined]
        yield srv


def seed(c: httpx.Client) -> dict[str, Any]:
    def made(path: str, key: str, attrs: dict[str, Any]) -> str:
        r = c.post(path, json={key: {"project_id": "st", **attrs}})
        assert r.status_code == 201, r.text
        return r.json()[key]["id"]

    network = made("/v2.0/networks", "network", {})
    ports = [made("/v2.0/ports", "port", {"network_id": network, "fixed_ips": [
        {"ip_address": f"10.0.0.{i + 1}"}], "binding:host_id": "st-host"}) for i in range(3)]
    service = made("/v2.0/taas/tap_services", "tap_service", {"port_id": ports[0]})
    tap_filter = made("/v2.0/taas/tap_filters", "tap_filter", {"rules": [
        {"priority": 1, "action": "mirror", "protocol": "tcp", "destination_port_range": "80"}]})
    ids: dict[str, Any] = {"network_id": network, "port_id": ports[1], "tap_service_id": service,
           "tap_flow_id": made("/v2.0/taas/tap_flows", "tap_flow", {
               "tap_service_id": service, "source_port": ports[1], "direction": "IN",
               "vlan_filter": "10-20", "tap_filter_id": tap_filter}),
           "tap_filter_id": tap_filter,
           "tap_mirror_id": made("/v2.0/taas/tap_mirrors", "tap_mirror", {
               "port_id": ports[2], "directions": {"IN": 7, "OUT": "8"},
               "remote_ip": "192.0.2.99", "mirror_type": "gre"})}
    r = c.put("/v2.0/taas-agents/st-host", json={"agent": {"tunnel_ip": "192.0.2.98"}})
    assert r.status_code == 200, r.text
    ids["id_"] = r.json()["agent"]["id"]
    ids["host"] = "st-host"
    ids["ports"] = ports  # type: ignore[assignment]
    ids["alias"] = "taas"
    ids["project_id"] = "st"  # quotas
    return ids


@pytest.fixture(scope="module")
def api_schema(st_server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(st_server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented(case: Any, st_server: ServerProcess) -> None:
    if case.path.endswith("/desired-state"):
        # A long-poll: a generated revision equal to the current one would wait `timeout`.
        case.query = {**(case.query or {}), "timeout": 0}
    case.call_and_validate(headers=st_server.headers("admin"), checks=CHECKS)


def test_the_document_covers_every_route(st_server: ServerProcess) -> None:
    doc = httpx.get(st_server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert any(code.startswith("2") for code in op["responses"]), (method, path)
            if method in ("post", "put"):
                assert "requestBody" in op, (
                    f"{method} {path}: declare its JSON body with "
                    "openapi_extra=taas.server.api.openapi.body(Model)")
    assert {"/v2.0/taas/tap_services", "/v2.0/ports/{port_id}", "/v2.0/agents/{id_}",
            "/v2.0/taas-agents/{host}/report"} <= set(doc["paths"])
    assert httpx.get(st_server.url + "/docs").status_code == 200


UPDATES = {"tap_service_id": {"tap_service": {"name": "n"}},
           "tap_flow_id": {"tap_flow": {"description": "d"}},
           "tap_mirror_id": {"tap_mirror": {"name": "m"}},
           "tap_filter_id": {"tap_filter": {"name": "f"}},
           "network_id": {"network": {"admin_state_up": True}},
           "port_id": {"port": {"device_owner": "compute:nova"}},
           "/v2.0/taas-agents/{host}": {"agent": {"tunnel_ip": "192.0.2.98"}},
           "/v2.0/taas-agents/{host}/report": {"report": {"resources": [], "taas_ids": []}},
           "/v2.0/taas-agents/{host}/counters": {"counters": {"boot": "b", "seq": 1}},
           "project_id": {"quota": {"tap_flow": 60}}}


def test_existing_resources_answer_as_documented(api_schema: Any,
                                                 st_server: ServerProcess) -> None:
    """Every read and update of a resource that exists (generated ids rarely hit one), the
    agent API included (the seeded ports are bound to the seeded host)."""
    seeded = st_server.seeded  # type: ignore[attr-defined]
    calls = 0
    for path, methods in httpx.get(st_server.url + "/openapi.json").json()["paths"].items():
        names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        for method in ("get", "put"):
            if method not in methods or (method == "put" and not names):
                continue
            kwargs: dict[str, Any] = {"path_parameters": {n: seeded[n] for n in names}}
            if method == "put":
                body = UPDATES.get(path) or UPDATES.get(names[-1]) or {
                    "ports": [{"port_id": p} for p in seeded["ports"]]}  # the host's own
                kwargs.update(body=body, media_type="application/json")
            case = api_schema[path][method.upper()].Case(**kwargs)
            if path.endswith("/desired-state"):
                case.query = {"timeout": 0}
            response = case.call_and_validate(headers=st_server.headers("admin"),
                                              checks=CHECKS)
            assert response.status_code == 200, (method, path, response.text)
            calls += 1
    assert calls >= 23
    state = httpx.get(f"{st_server.url}/v2.0/taas-agents/st-host/desired-state",
                      headers=st_server.headers("admin")).json()["desired_state"]
    assert state["tap_services"] and state["tap_flows"] and state["tap_mirrors"]
