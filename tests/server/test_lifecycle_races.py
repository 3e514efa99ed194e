"""Races between agents' reports, deletions and bindings (the PostgreSQL ones need real
concurrency: one server process, several clients at once)."""

from __future__ import annotations

import threading
import uuid

from .conftest import Api

AGENTS = "/v2.0/taas-agents"


def _host(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _register(api: Api, host: str, ports: list[str]) -> None:
    svc = api("service")
    assert svc.put(f"{AGENTS}/{host}", json={"agent": {"tunnel_ip": "10.9.0.1"}}
                   ).status_code == 200
    assert svc.put(f"{AGENTS}/{host}/ports", json={"ports": [{"port_id": p} for p in ports]}
                   ).status_code == 200


def _revision(api: Api, host: str) -> int:
    return api("service").get(f"{AGENTS}/{host}/desired-state").json()["desired_state"][
        "revision"]


def _report(api: Api, host: str, resources: list[dict], taas_ids: list[int],
            revision: int | None = None) -> None:
    rev = _revision(api, host) if revision is None else revision
    r = api("service").put(f"{AGENTS}/{host}/report", json={"report": {
        "revision": rev, "resources": resources, "taas_ids": taas_ids}})
    assert r.status_code == 200, r.text


def test_a_concurrent_report_never_undoes_a_delete(api: Api) -> None:
    host = _host("race-del")
    net = api.network()
    mon = api.port(network_id=net["id"])
    srcs = [api.port(network_id=net["id"]) for _ in range(40)]
    _register(api, host, [mon["id"]] + [p["id"] for p in srcs])
    ts = api.tap_service(port_id=mon["id"])
    flows = [api.tap_flow(ts, source_port=p["id"]) for p in srcs]
    stop = threading.Event()
    errors: list[str] = []
    reports: list[int] = []

    def reporter() -> None:
        i = 0
        with api.server.client("service") as c:
            while not stop.is_set():
                i += 1
                status = "ACTIVE" if i % 2 else "ERROR"
                res = [{"kind": "tap_service", "id": ts["id"], "status": "ACTIVE"}] + [
                    {"kind": "tap_flow", "id": f["id"], "status": status} for f in flows]
                r = c.put(f"{AGENTS}/{host}/report", json={"report": {
                    "revision": 2**40, "resources": res, "taas_ids": []}})
                reports.append(r.status_code)
                # Reports of one host at once may conflict with each other (409, retried).
                if r.status_code not in (200, 409):
                    errors.append(r.text)

    threads = [threading.Thread(target=reporter) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for f in flows:
            assert api("a-member").delete(f"/v2.0/taas/tap_flows/{f['id']}").status_code == 204
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and reports.count(200) >= 3
    # Still held by the host: every deleted flow waits in PENDING_DELETE.
    statuses = [api("a-member").get(f"/v2.0/taas/tap_flows/{f['id']}").json().get(
        "tap_flow", {}).get("status") for f in flows]
    assert statuses == ["PENDING_DELETE"] * len(flows)
    state = api("service").get(f"{AGENTS}/{host}/desired-state").json()["desired_state"]
    assert state["tap_flows"] == []
