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
    """(Re-)register the host and bind exactly these ports to it."""
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


def _taas_ids(api: Api, host: str) -> dict[str, int]:
    state = api("service").get(f"{AGENTS}/{host}/desired-state").json()["desired_state"]
    return {s["id"]: s["taas_id"] for s in state["tap_services"]}


def _status(api: Api, kind: str, id_: str) -> str | None:
    return api("admin").get(f"/v2.0/taas/{kind}s/{id_}").json().get(kind, {}).get("status")


def test_taas_id_kept_while_a_host_that_got_it_by_a_later_binding_has_not_reported(
        api: Api) -> None:
    h1, h2 = _host("late-bind"), _host("late-bind")
    _register(api, h1, [])
    _register(api, h2, [])
    _report(api, h1, [], [])
    ts = api.tap_service()  # its port is not bound yet: no host has it
    _report(api, h1, [], [])
    # The port is bound after the creation: h1 now installs the service.
    _register(api, h1, [ts["port_id"]])
    taken = _taas_ids(api, h1)[ts["id"]]
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    assert _status(api, "tap_service", ts["id"]) == "PENDING_DELETE"
    other = api.tap_service()
    _register(api, h1, [ts["port_id"], other["port_id"]])
    assert _taas_ids(api, h1)[other["id"]] != taken
    _report(api, h1, [], [])
    assert _status(api, "tap_service", ts["id"]) is None  # confirmed: gone

    # The port moves h1 -> h2: h2 installs it from that binding on.
    moved = api.tap_service()
    _register(api, h1, [moved["port_id"]])
    _report(api, h1, [{"kind": "tap_service", "id": moved["id"], "status": "ACTIVE"}],
            [_taas_ids(api, h1)[moved["id"]]])
    _report(api, h2, [], [])
    _register(api, h1, [])
    _report(api, h1, [], [])
    _register(api, h2, [moved["port_id"]])
    assert moved["id"] in _taas_ids(api, h2)
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{moved['id']}").status_code == 204
    assert _status(api, "tap_service", moved["id"]) == "PENDING_DELETE"
    _report(api, h2, [], [])
    assert _status(api, "tap_service", moved["id"]) is None


def test_pending_delete_of_a_deleted_port_ends_with_the_next_report(api: Api) -> None:
    host = _host("port-gone")
    mon, src = api.port(), api.port()
    _register(api, host, [mon["id"], src["id"]])
    _report(api, host, [], [])
    tunnel = 5_000_000 + int(uuid.uuid4().int % 1_000_000)
    mirror = api.tap_mirror(port_id=src["id"], directions={"OUT": tunnel})
    ts = api.tap_service(port_id=mon["id"])
    flow = api.tap_flow(ts, source_port=src["id"])
    # The VM goes before the host reported the new resources: they wait for that report.
    assert api("admin").delete(f"/v2.0/ports/{src['id']}").status_code == 204
    assert _status(api, "tap_mirror", mirror["id"]) == "PENDING_DELETE"
    assert _status(api, "tap_flow", flow["id"]) == "PENDING_DELETE"
    _report(api, host, [], [])
    assert _status(api, "tap_mirror", mirror["id"]) is None
    assert _status(api, "tap_flow", flow["id"]) is None
    api.tap_mirror(port_id=api.port()["id"], directions={"OUT": tunnel})  # tunnel id free


def test_deleting_a_silent_agent_releases_what_waited_for_it(api: Api) -> None:
    host = _host("silent")
    port = api.port()
    _register(api, host, [port["id"]])
    mirror = api.tap_mirror(port_id=port["id"])
    assert api("admin").delete(f"/v2.0/ports/{port['id']}").status_code == 204
    assert _status(api, "tap_mirror", mirror["id"]) == "PENDING_DELETE"
    agents = api("admin").get("/v2.0/agents", params={"host": host}).json()["agents"]
    (agent,) = [a for a in agents if a["host"] == host]
    assert api("admin").delete(f"/v2.0/agents/{agent['id']}").status_code == 204
    assert _status(api, "tap_mirror", mirror["id"]) is None


def test_concurrent_creates_on_one_port_or_pair_yield_one_resource(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(path: str, body: dict) -> int:
        with api.server.client("a-member") as c:
            return c.post(path, json=body).status_code

    mon, src = api.port(), api.port()
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(lambda _: post("/v2.0/taas/tap_services", {
            "tap_service": {"port_id": mon["id"]}}), range(6)))
    assert codes == [201] + [409] * 5
    (ts,) = api("a-member").get("/v2.0/taas/tap_services",
                                params={"port_id": mon["id"]}).json()["tap_services"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(lambda _: post("/v2.0/taas/tap_flows", {"tap_flow": {
            "tap_service_id": ts["id"], "source_port": src["id"], "direction": "IN"}}),
            range(6)))
    assert codes == [201] + [409] * 5
    flows = api("a-member").get("/v2.0/taas/tap_flows",
                                params={"tap_service_id": ts["id"]}).json()["tap_flows"]
    assert len(flows) == 1


def _binding(api: Api, port_id: str) -> str:
    return api("admin").get(f"/v2.0/ports/{port_id}").json()["port"]["binding:host_id"]


def test_two_hosts_reporting_one_port_do_not_flip_its_binding(api: Api) -> None:
    h1, h2 = _host("pingpong"), _host("pingpong")
    port = api.port()
    _register(api, h1, [port["id"]])
    _register(api, h2, [port["id"]])
    assert _binding(api, port["id"]) == h1
    revision = _revision(api, h1)
    for h in (h1, h2, h1, h2):
        _register(api, h, [port["id"]])
    assert _binding(api, port["id"]) == h1
    assert _revision(api, h1) == revision  # no change, no new revision
    _register(api, h1, [])  # the holder drops it: the other host takes it on its next report
    _register(api, h2, [port["id"]])
    assert _binding(api, port["id"]) == h2


def test_status_ignores_errors_of_hosts_no_longer_involved(api: Api) -> None:
    h1, h2 = _host("moved"), _host("moved")
    ts = api.tap_service()
    held = [{"kind": "tap_service", "id": ts["id"], "status": "ERROR"}]
    _register(api, h1, [ts["port_id"]])
    _report(api, h1, held, [])
    assert _status(api, "tap_service", ts["id"]) == "ERROR"
    _register(api, h1, [])  # the port moves to h2; h1 still reports its stale copy in ERROR
    _register(api, h2, [ts["port_id"]])
    _report(api, h1, held, [])
    _report(api, h2, [{"kind": "tap_service", "id": ts["id"], "status": "ACTIVE"}], [])
    assert _status(api, "tap_service", ts["id"]) == "ACTIVE"
