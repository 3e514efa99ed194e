"""Concurrent creates never double-allocate; exhaustion is a clean 409; postcommit rollback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taas.common.desired_state import DesiredState
from taas.testing.server import ServerProcess, run_server

from .conftest import FAULT_DRIVER, Api, fresh_tunnel_id, neutron_error

TS = "/v2.0/taas/tap_services"


@pytest.fixture(scope="module")
def server(db_url: str | None) -> Iterator[ServerProcess]:
    # 45 ids for 40 parallel creates: contention, then exhaustion.
    with run_server(db_url=db_url, vlan_range_start=3900, vlan_range_end=3945,
                    service_driver=FAULT_DRIVER) as srv:
        yield srv


def test_parallel_creates_never_share_a_taas_id_and_exhaust_cleanly(api: Api) -> None:
    net = api.network()
    ports = [api.port(network_id=net["id"]) for _ in range(50)]

    def create(port_id: str) -> httpx.Response:
        with api.server.client("a-member") as c:
            return c.post(TS, json={"tap_service": {"port_id": port_id}})

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(create, [p["id"] for p in ports[:40]]))
    assert [r.status_code for r in results] == [201] * 40, [r.text for r in results if
                                                             r.status_code != 201]
    host = "conc-host"
    svc = api("service")
    assert svc.put(f"/v2.0/taas-agents/{host}", json={"agent": {"tunnel_ip": "10.1.1.1"}}
                   ).status_code == 200
    assert svc.put(f"/v2.0/taas-agents/{host}/ports", json={"ports": [
        {"port_id": p["id"]} for p in ports]}).status_code == 200
    st = DesiredState.from_dict(
        svc.get(f"/v2.0/taas-agents/{host}/desired-state").json()["desired_state"])
    ids = [s.taas_id for s in st.tap_services]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert all(3900 <= i < 3945 for i in ids)
    # 10 more in parallel for 5 free ids: exactly 5 succeed, the rest are 409.
    with ThreadPoolExecutor(max_workers=10) as pool:
        more = list(pool.map(create, [p["id"] for p in ports[40:50]]))
    codes = sorted(r.status_code for r in more)
    assert codes == [201] * 5 + [409] * 5
    for r in more:
        if r.status_code == 409:
            neutron_error(r, 409, "TapServiceLimitReached")
    # The host reports it holds nothing at the latest revision: later deletes are immediate.
    revision = svc.get(f"/v2.0/taas-agents/{host}/desired-state").json()["desired_state"][
        "revision"]
    assert svc.put(f"/v2.0/taas-agents/{host}/report", json={"report": {
        "revision": revision, "resources": [], "taas_ids": []}}).status_code == 200


def test_parallel_mirrors_with_one_tunnel_id_only_one_wins(api: Api) -> None:
    tunnel = fresh_tunnel_id()
    ports = [api.port() for _ in range(8)]

    def create(port_id: str) -> int:
        with api.server.client("a-member") as c:
            return c.post("/v2.0/taas/tap_mirrors", json={"tap_mirror": {
                "port_id": port_id, "directions": {"IN": tunnel}, "remote_ip": "192.0.2.9",
                "mirror_type": "gre"}}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(create, [p["id"] for p in ports]))
    assert codes == [201] + [409] * 7


@pytest.mark.parametrize("kind", ["tap_mirror", "tap_flow", "tap_service"])
def test_postcommit_failure_rolls_the_create_back(api: Api, kind: str) -> None:
    name = "fail-postcommit-" + kind
    c = api("admin")
    before = c.get(f"/v2.0/taas/{kind}s").json()[f"{kind}s"]
    if kind == "tap_flow":
        # Use a free id for the service: the range above may be exhausted by now.
        existing = c.get(TS, params={"limit": 1}).json()["tap_services"]
        service_id = existing[0]["id"] if existing else api.tap_service()["id"]
        body = {"tap_service_id": service_id, "source_port": api.port()["id"],
                "direction": "IN", "project_id": "project-a"}
    elif kind == "tap_mirror":
        body = {"port_id": api.port()["id"], "directions": {"IN": fresh_tunnel_id()},
                "remote_ip": "192.0.2.1", "mirror_type": "gre", "project_id": "project-a"}
    else:
        for s in c.get(TS).json()["tap_services"]:
            c.delete(f"{TS}/{s['id']}")  # frees taas_ids once the host confirms:
        svc = api("service")
        revision = svc.get("/v2.0/taas-agents/conc-host/desired-state").json()[
            "desired_state"]["revision"]
        assert svc.put("/v2.0/taas-agents/conc-host/report", json={"report": {
            "revision": revision, "resources": [], "taas_ids": []}}).status_code == 200
        before = c.get(TS).json()["tap_services"]
        body = {"port_id": api.port()["id"], "project_id": "project-a"}
    r = c.post(f"/v2.0/taas/{kind}s", json={kind: {**body, "name": name}})
    err = neutron_error(r, 500, "TaasDriverError")
    assert "removed" in err["message"]
    after = c.get(f"/v2.0/taas/{kind}s").json()[f"{kind}s"]
    assert after == before
    # The same request without the fault succeeds: nothing was left behind.
    r = c.post(f"/v2.0/taas/{kind}s", json={kind: {**body, "name": "ok"}})
    assert r.status_code == 201, r.text


def test_parallel_network_creates_get_distinct_segmentation_ids(api: Api) -> None:
    def create(_: int) -> httpx.Response:
        with api.server.client("admin") as c:
            return c.post("/v2.0/networks", json={"network": {"project_id": "project-a"}})

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(create, range(10)))
    assert [r.status_code for r in results] == [201] * 10, [r.text for r in results]
    segs = {r.json()["network"]["provider:segmentation_id"] for r in results}
    assert len(segs) == 10
