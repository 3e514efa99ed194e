"""The agent-facing API: registration, port bindings, desired state, reports and statuses."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taas.common.desired_state import DesiredState
from taas.testing.server import ServerProcess, run_server

from .conftest import Api, neutron_error

AGENTS = "/v2.0/taas-agents"


@pytest.fixture(scope="module")
def server(db_url: str | None) -> Iterator[ServerProcess]:
    # A small taas_id range makes allocation deterministic; a short down time shows liveness;
    # a safety poll longer than any wait below: only the notifier answers a long-poll early.
    with run_server(db_url=db_url, vlan_range_start=3900, vlan_range_end=3920,
                    agent_down_time=1, revision_poll_interval=120) as srv:
        yield srv


def host() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


def register(api: Api, name: str, ip: str = "172.31.0.1") -> dict[str, Any]:
    r = api("service").put(f"{AGENTS}/{name}", json={"agent": {"tunnel_ip": ip}})
    assert r.status_code == 200, r.text
    return r.json()["agent"]


def bind(api: Api, name: str, *port_ids: str) -> dict[str, Any]:
    r = api("service").put(f"{AGENTS}/{name}/ports", json={"ports": [
        {"port_id": p, "ofport": i + 1, "local_vlan": 1, "mac": "fa:16:3e:00:00:01",
         "name": f"tap{i}"} for i, p in enumerate(port_ids)]})
    assert r.status_code == 200, r.text
    return r.json()


def state(api: Api, name: str, **params: Any) -> DesiredState:
    r = api("service").get(f"{AGENTS}/{name}/desired-state", params=params, timeout=90)
    assert r.status_code == 200, r.text
    return DesiredState.from_dict(r.json()["desired_state"])


def report(api: Api, name: str, resources: list[tuple[str, str, str]],
           taas_ids: list[int] = (),  # type: ignore[assignment]
           revision: int | None = None) -> None:
    """Report like an agent that converged to the current revision (unless told otherwise)."""
    if revision is None:
        revision = state(api, name).revision
    r = api("service").put(f"{AGENTS}/{name}/report", json={"report": {
        "host": name, "revision": revision, "taas_ids": list(taas_ids),
        "resources": [{"kind": k, "id": i, "status": s} for k, i, s in resources]}})
    assert r.status_code == 200, r.text


def status(api: Api, kind: str, id_: str) -> str:
    r = api("admin").get(f"/v2.0/taas/{kind}s/{id_}")
    assert r.status_code == 200, r.text
    return r.json()[kind]["status"]


def test_register_heartbeat_and_liveness(api: Api) -> None:
    name = host()
    agent = register(api, name, "172.31.9.1")
    assert agent["host"] == name and agent["agent_type"] == "TaaS agent"
    assert agent["binary"] == "taas-agent"
    assert agent["configurations"] == {"tunnel_ip": "172.31.9.1"}
    listed = api("admin").get("/v2.0/agents", params={"host": name}).json()["agents"]
    assert [a["id"] for a in listed] == [agent["id"]] and listed[0]["alive"] is True
    assert register(api, name, "172.31.9.2")["id"] == agent["id"]
    time.sleep(2.1)
    got = api("admin").get(f"/v2.0/agents/{agent['id']}").json()["agent"]
    assert got["alive"] is False and got["configurations"]["tunnel_ip"] == "172.31.9.2"
    assert register(api, name, "172.31.9.2")["alive"] is True
    neutron_error(api("service").put(f"{AGENTS}/{host()}/ports", json={"ports": []}), 404)


def test_ports_bind_and_unbind(api: Api) -> None:
    name = host()
    register(api, name)
    p1, p2 = api.port(), api.port()
    out = bind(api, name, p1["id"], p2["id"], "not-a-known-port")
    assert {p["id"] for p in out["ports"]} == {p1["id"], p2["id"]}
    assert out["unknown"] == ["not-a-known-port"]
    assert all(p["binding:host_id"] == name for p in out["ports"])
    bind(api, name, p2["id"])
    r = api("admin").get(f"/v2.0/ports/{p1['id']}").json()["port"]
    assert r["binding:host_id"] == ""
    assert api("admin").get(f"/v2.0/ports/{p2['id']}").json()["port"]["binding:host_id"] == name


def test_desired_state_contents_across_hosts(api: Api) -> None:
    h_dst, h_src = host(), host()
    register(api, h_dst, "172.31.1.1")
    register(api, h_src, "172.31.1.2")
    ts = api.tap_service()
    src = api.port()
    flow = api.tap_flow(ts, source_port=src["id"], vlan_filter="5-7")
    mirror = api.tap_mirror(port_id=src["id"], directions={"BOTH": 777_000 + id(ts) % 1000})
    bind(api, h_dst, ts["port_id"])
    bind(api, h_src, src["id"])
    dst_state, src_state = state(api, h_dst), state(api, h_src)
    (svc,) = dst_state.tap_services
    assert svc.id == ts["id"] and 3900 <= svc.taas_id < 3920
    assert svc.vni == 16_000_000 + svc.taas_id
    assert svc.dest_host == h_dst and svc.dest_tunnel_ip == "172.31.1.1"
    assert [f.id for f in dst_state.tap_flows] == [flow["id"]]
    assert dst_state.tap_mirrors == ()
    assert [s.id for s in src_state.tap_services] == [ts["id"]]
    (f,) = src_state.tap_flows
    assert (f.source_port, f.direction, f.vlan_filter) == (src["id"], "BOTH", "5-7")
    assert [m.id for m in src_state.tap_mirrors] == [mirror["id"]]
    facts = src_state.ports[src["id"]]
    assert facts.host == h_src and facts.mac == src["mac_address"]
    net = api("admin").get(f"/v2.0/networks/{src['network_id']}").json()["network"]
    assert facts.segmentation_id == net["provider:segmentation_id"]
    # A host with nothing gets an empty state, never another host's resources.
    empty = state(api, host())
    assert empty.tap_services == () and empty.tap_flows == () and empty.ports == {}


def test_long_poll_times_out_then_wakes_on_change(api: Api) -> None:
    name = host()
    register(api, name)
    current = state(api, name).revision
    t0 = time.monotonic()
    again = state(api, name, revision=current, timeout=1)
    assert 0.9 <= time.monotonic() - t0 < 5 and again.revision == current
    result: dict[str, Any] = {}

    def watch() -> None:
        t = time.monotonic()
        result["state"] = state(api, name, revision=current, timeout=30)
        result["elapsed"] = time.monotonic() - t

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)
    ts = api.tap_service()
    bind(api, name, ts["port_id"])
    watcher.join(timeout=40)
    # Woken by the change (a broken notifier leaves it waiting for its 30 s timeout).
    assert result["elapsed"] < 20
    assert result["state"].revision > current
    # An absent or stale revision answers at once.
    t0 = time.monotonic()
    state(api, name, revision=current, timeout=30)
    assert time.monotonic() - t0 < 5


def test_status_aggregates_reports_of_involved_hosts(api: Api) -> None:
    h_dst, h_src = host(), host()
    register(api, h_dst)
    register(api, h_src)
    ts = api.tap_service()
    src = api.port()
    flow = api.tap_flow(ts, source_port=src["id"])
    # Unbound ports: DOWN whatever is reported.
    report(api, h_dst, [("tap_service", ts["id"], "ACTIVE")])
    assert status(api, "tap_service", ts["id"]) == "DOWN"
    bind(api, h_dst, ts["port_id"])
    report(api, h_dst, [("tap_service", ts["id"], "ACTIVE"), ("tap_flow", flow["id"], "ACTIVE")])
    assert status(api, "tap_service", ts["id"]) == "ACTIVE"
    assert status(api, "tap_flow", flow["id"]) == "DOWN"  # source host not bound yet
    bind(api, h_src, src["id"])
    assert status(api, "tap_flow", flow["id"]) == "DOWN"  # source host has not reported
    report(api, h_src, [("tap_flow", flow["id"], "ACTIVE"), ("tap_service", ts["id"], "ACTIVE")])
    assert status(api, "tap_flow", flow["id"]) == "ACTIVE"
    report(api, h_src, [("tap_flow", flow["id"], "ERROR")])
    assert status(api, "tap_flow", flow["id"]) == "ERROR"
    report(api, h_src, [("tap_flow", flow["id"], "ACTIVE")])
    assert status(api, "tap_flow", flow["id"]) == "ACTIVE"


def test_pending_delete_until_hosts_confirm(api: Api) -> None:
    h1, h2 = host(), host()
    register(api, h1)
    register(api, h2)
    ts = api.tap_service()
    src = api.port()
    flow = api.tap_flow(ts, source_port=src["id"])
    bind(api, h1, ts["port_id"])
    bind(api, h2, src["id"])
    report(api, h1, [("tap_service", ts["id"], "ACTIVE"), ("tap_flow", flow["id"], "ACTIVE")])
    report(api, h2, [("tap_service", ts["id"], "ACTIVE"), ("tap_flow", flow["id"], "ACTIVE")])
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    assert status(api, "tap_service", ts["id"]) == "PENDING_DELETE"
    assert status(api, "tap_flow", flow["id"]) == "PENDING_DELETE"
    # Gone from every desired state at once.
    for h in (h1, h2):
        s = state(api, h)
        assert s.tap_services == () and s.tap_flows == ()
    # Deleting again is harmless; the PENDING_DELETE row stays visible.
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    report(api, h1, [])
    assert status(api, "tap_flow", flow["id"]) == "PENDING_DELETE"  # h2 still holds it
    report(api, h2, [])
    neutron_error(api("admin").get(f"/v2.0/taas/tap_flows/{flow['id']}"), 404)
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
    # The port is free for a new tap service right away.
    api.tap_service(port_id=ts["port_id"])


def test_unheld_resource_is_deleted_at_once(api: Api) -> None:
    mirror = api.tap_mirror()
    assert api("a-member").delete(f"/v2.0/taas/tap_mirrors/{mirror['id']}").status_code == 204
    neutron_error(api("a-member").get(f"/v2.0/taas/tap_mirrors/{mirror['id']}"), 404)


def test_taas_id_not_reused_while_a_host_reports_it(api: Api) -> None:
    name = host()
    register(api, name)
    ts = api.tap_service()
    bind(api, name, ts["port_id"])
    (svc,) = state(api, name).tap_services
    taken = svc.taas_id
    # The host still has flows with this taas_id (e.g. stale), but not the resource.
    report(api, name, [], taas_ids=[taken])
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    neutron_error(api("a-member").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
    fresh = [api.tap_service() for _ in range(3)]
    bind(api, name, *[s["port_id"] for s in fresh])
    ids = {s.taas_id for s in state(api, name).tap_services}
    assert len(ids) == 3 and taken not in ids
    # Released once the host no longer reports it: filling the range hands it out again.
    report(api, name, [], taas_ids=[])
    extra = []
    while True:
        port = api.port()
        r = api("a-member").post("/v2.0/taas/tap_services",
                                 json={"tap_service": {"port_id": port["id"]}})
        if r.status_code == 409:
            assert r.json()["NeutronError"]["type"] == "TapServiceLimitReached"
            break
        assert r.status_code == 201 and len(extra) < 20
        extra.append(r.json()["tap_service"])
    bind(api, name, *[s["port_id"] for s in fresh + extra])
    assert taken in {s.taas_id for s in state(api, name).tap_services}
    for s in fresh + extra:
        assert api("a-member").delete(f"/v2.0/taas/tap_services/{s['id']}").status_code == 204
    # The host got them in its desired state and has not reported since: they wait for it
    # (or for its death: agent_down_time is 1 s here).
    report(api, name, [])
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{fresh[0]['id']}"), 404)


def test_a_port_held_by_a_dead_agent_moves_to_a_live_one(api: Api) -> None:
    h_dead, h_live = host(), host()
    port = api.port()
    register(api, h_live)
    register(api, h_dead)  # alive for agent_down_time=1 s from here
    bind(api, h_dead, port["id"])
    bind(api, h_live, port["id"])
    assert api("admin").get(f"/v2.0/ports/{port['id']}").json()["port"][
        "binding:host_id"] == h_dead
    time.sleep(2.1)  # agent_down_time=1 (heartbeats stored to the second): h_dead is dead
    register(api, h_live)
    bind(api, h_live, port["id"])
    assert api("admin").get(f"/v2.0/ports/{port['id']}").json()["port"][
        "binding:host_id"] == h_live


def test_admin_deletes_dead_agent_and_its_holdings(api: Api) -> None:
    name = host()
    agent = register(api, name)
    ts = api.tap_service()
    bind(api, name, ts["port_id"])
    report(api, name, [("tap_service", ts["id"], "ACTIVE")], taas_ids=[3919])
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    assert status(api, "tap_service", ts["id"]) == "PENDING_DELETE"
    neutron_error(api("a-member").delete(f"/v2.0/agents/{agent['id']}"), 403)
    assert api("admin").delete(f"/v2.0/agents/{agent['id']}").status_code == 204
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
    neutron_error(api("admin").get(f"/v2.0/agents/{agent['id']}"), 404, "AgentNotFound")
    port = api("admin").get(f"/v2.0/ports/{ts['port_id']}").json()["port"]
    assert port["binding:host_id"] == ""


def test_report_validation(api: Api) -> None:
    name = host()
    register(api, name)
    c = api("service")
    for bad in ({"report": {"host": "other", "revision": 1}},
                {"report": {"resources": [{"kind": "port", "id": "x", "status": "ACTIVE"}]}},
                {"report": {"resources": [{"kind": "tap_flow", "id": "x", "status": "DOWN"}]}},
                {"report": {"taas_ids": ["a"]}},
                {"report": {"taas_ids": [5000]}},
                {"report": []}, {}):
        neutron_error(c.put(f"{AGENTS}/{name}/report", json=bad), 400)


def test_port_delete_of_held_resources_goes_through_pending_delete(api: Api) -> None:
    name = host()
    register(api, name)
    ts = api.tap_service()
    src = api.port()
    flow = api.tap_flow(ts, source_port=src["id"])
    bind(api, name, ts["port_id"], src["id"])
    report(api, name, [("tap_service", ts["id"], "ACTIVE"), ("tap_flow", flow["id"], "ACTIVE")])
    assert status(api, "tap_flow", flow["id"]) == "ACTIVE"
    assert api("admin").delete(f"/v2.0/ports/{src['id']}").status_code == 204
    assert status(api, "tap_flow", flow["id"]) == "PENDING_DELETE"
    assert status(api, "tap_service", ts["id"]) == "ACTIVE"
    s = state(api, name)
    assert s.tap_flows == () and [x.id for x in s.tap_services] == [ts["id"]]
    report(api, name, [("tap_service", ts["id"], "ACTIVE")])
    neutron_error(api("admin").get(f"/v2.0/taas/tap_flows/{flow['id']}"), 404)


def test_tunnel_ip_and_binding_changes_reach_other_hosts(api: Api) -> None:
    h_dst, h_src = host(), host()
    register(api, h_dst, "172.31.5.1")
    register(api, h_src, "172.31.5.2")
    ts = api.tap_service()
    src = api.port()
    api.tap_flow(ts, source_port=src["id"])
    bind(api, h_dst, ts["port_id"])
    bind(api, h_src, src["id"])
    before = state(api, h_src)
    assert before.tap_services[0].dest_tunnel_ip == "172.31.5.1"
    register(api, h_dst, "172.31.5.9")
    after = state(api, h_src, revision=before.revision, timeout=5)
    assert after.revision > before.revision
    assert after.tap_services[0].dest_tunnel_ip == "172.31.5.9"
    # The destination VM moves to another host (admin rebinding): the source host follows.
    h_new = host()
    register(api, h_new, "172.31.5.10")
    r = api("admin").put(f"/v2.0/ports/{ts['port_id']}", json={"port": {"binding:host_id": h_new}})
    assert r.status_code == 200
    moved = state(api, h_src, revision=after.revision, timeout=5)
    assert (moved.tap_services[0].dest_host, moved.tap_services[0].dest_tunnel_ip) == (
        h_new, "172.31.5.10")
    assert state(api, h_dst).tap_services == ()


def test_delete_waits_for_a_host_that_has_not_reported_since_the_create(api: Api) -> None:
    name = host()
    register(api, name)
    port = api.port()
    bind(api, name, port["id"])
    report(api, name, [])  # converged before the tap service exists
    old = state(api, name).revision
    ts = api.tap_service(port_id=port["id"])
    # The agent may be installing it right now (its report is in flight): not deleted at once.
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    assert status(api, "tap_service", ts["id"]) == "PENDING_DELETE"
    report(api, name, [], revision=old)  # a stale report does not settle it
    assert status(api, "tap_service", ts["id"]) == "PENDING_DELETE"
    report(api, name, [])  # converged past the create and the delete: gone
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
    # A host that reported after the create and does not hold it: deleted at once.
    ts2 = api.tap_service(port_id=port["id"])
    report(api, name, [])
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts2['id']}").status_code == 204
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts2['id']}"), 404)


def test_a_dead_agent_does_not_block_deletion(api: Api) -> None:
    name = host()
    register(api, name)
    ts = api.tap_service()
    bind(api, name, ts["port_id"])  # in its desired state; it never reports
    time.sleep(2.1)  # agent_down_time=1 (heartbeats stored to the second): dead
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
