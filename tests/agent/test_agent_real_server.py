"""The agent (fake driver) against a real taas-server: the agent API contract, status, delete."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from taas.agent.agent import Agent, AgentConfig
from taas.agent.client import ServerClient
from taas.agent.ports import LocalPort
from taas.testing.server import ServerProcess, run_server

from .conftest import FakeDriver, wait_for

NET = "11111111-0000-4000-8000-000000000001"
MON = LocalPort("22222222-0000-4000-8000-000000000001", 5, 1, "fa:16:3e:aa:00:01", "tapmon")
SRC = LocalPort("22222222-0000-4000-8000-000000000002", 6, 1, "fa:16:3e:aa:00:02", "tapsrc")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with run_server() as srv, srv.client("admin") as admin:
        r = admin.post("/v2.0/networks", json={"network": {
            "id": NET, "name": "n1", "project_id": "project-a", "tenant_id": "project-a",
            "provider:network_type": "vxlan", "provider:segmentation_id": 1234}})
        assert r.status_code == 201, r.text
        for p in (MON, SRC):
            r = admin.post("/v2.0/ports", json={"port": {
                "id": p.port_id, "name": p.name, "network_id": NET, "project_id": "project-a",
                "tenant_id": "project-a", "mac_address": p.mac}})
            assert r.status_code == 201, r.text
        yield srv


@pytest.fixture
def agent(server: ServerProcess) -> Iterator[tuple[Agent, FakeDriver]]:
    driver = FakeDriver()
    config = AgentConfig(host="rs-host1", tunnel_ip="172.31.77.1", report_interval=1,
                         resync_interval=0.5, reset_check_interval=0.5, min_backoff=0.05,
                         max_backoff=0.3, server_max_backoff=0.3)
    a = Agent(config, driver, ServerClient(server.url, server.tokens["service"], "rs-host1"))
    a.start()
    try:
        yield a, driver
    finally:
        a.stop()


def test_ports_bind_statuses_go_active_and_delete_completes(
        server: ServerProcess, agent: tuple[Agent, FakeDriver]) -> None:
    a, driver = agent
    a.set_ports({MON.port_id: MON, SRC.port_id: SRC})
    with server.client("admin") as admin, server.client("a-member") as api:
        # The agent registered (service role) and bound its ports to its host.
        wait_for(lambda: admin.get(f"/v2.0/ports/{SRC.port_id}").json()["port"]
                 .get("binding:host_id") == "rs-host1", timeout=10)
        ts = api.post("/v2.0/taas/tap_services", json={"tap_service": {
            "name": "s", "port_id": MON.port_id}}).json()["tap_service"]
        t0 = time.monotonic()
        tf = api.post("/v2.0/taas/tap_flows", json={"tap_flow": {
            "source_port": SRC.port_id, "tap_service_id": ts["id"],
            "direction": "BOTH"}}).json()["tap_flow"]
        wait_for(lambda: api.get(f"/v2.0/taas/tap_flows/{tf['id']}").json()["tap_flow"]
                 ["status"] == "ACTIVE", timeout=10)
        assert time.monotonic() - t0 < 2.0
        assert api.get(f"/v2.0/taas/tap_services/{ts['id']}").json()["tap_service"][
            "status"] == "ACTIVE"
        assert ("tap_flow", tf["id"]) in driver.flows

        # Delete: PENDING_DELETE (or already gone) until the agent reports without it.
        assert api.delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
        wait_for(lambda: api.get(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 404,
                 timeout=10)
        assert not driver.flows

        # The source port leaves the host: its binding is cleared.
        a.set_ports({MON.port_id: MON})
        wait_for(lambda: not admin.get(f"/v2.0/ports/{SRC.port_id}").json()["port"]
                 .get("binding:host_id"), timeout=10)
