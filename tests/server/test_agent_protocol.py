"""The agent protocol at scale: per-host revisions and wake-ups, per-host deletion gating,
digests that make idle agents cheap, per-host agent credentials."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taas.agent.client import ServerClient
from taas.common.desired_state import HostReport, ResourceStatus
from taas.testing.server import DEFAULT_IDENTITIES, ServerProcess, run_server
from taas.testing.wait import wait_until

from .conftest import Api, neutron_error

AGENTS = "/v2.0/taas-agents"
BOUND = f"bound-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def server(db_url: str | None) -> Iterator[ServerProcess]:
    tokens: dict[str, Any] = {n: {"project_id": p, "roles": r}
                              for n, (p, r) in DEFAULT_IDENTITIES.items()}
    # A per-host agent credential, and one of another host.
    tokens["h1-agent"] = {"project_id": "service-project", "roles": ["service"], "host": BOUND}
    tokens["h2-agent"] = {"project_id": "service-project", "roles": ["service"],
                          "host": BOUND + "-2"}
    # A long safety poll: only a targeted wake-up answers a long-poll early.
    with run_server(db_url=db_url, tokens=tokens, revision_poll_interval=60) as srv:
        yield srv


def host() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def register(api: Api, name: str, ip: str = "172.31.1.1", who: str = "service") -> Any:
    return api(who).put(f"{AGENTS}/{name}", json={"agent": {"tunnel_ip": ip}})


def bind(api: Api, name: str, *port_ids: str) -> None:
    r = api("service").put(f"{AGENTS}/{name}/ports",
                           json={"ports": [{"port_id": p} for p in port_ids]})
    assert r.status_code == 200, r.text


def revision(api: Api, name: str) -> int:
    r = api("service").get(f"{AGENTS}/{name}/desired-state")
    assert r.status_code == 200, r.text
    return int(r.json()["desired_state"]["revision"])


def state(api: Api, name: str) -> dict[str, Any]:
    return api("service").get(f"{AGENTS}/{name}/desired-state").json()["desired_state"]


def test_a_change_bumps_only_the_hosts_it_concerns(api: Api) -> None:
    h_dst, h_src, h_other = host(), host(), host()
    for h in (h_dst, h_src, h_other):
        assert register(api, h).status_code == 200
    dst, src, other = api.port(), api.port(), api.port()
    bind(api, h_dst, dst["id"])
    bind(api, h_src, src["id"])
    bind(api, h_other, other["id"])
    before = {h: revision(api, h) for h in (h_dst, h_src, h_other)}
    ts = api.tap_service(port_id=dst["id"])
    mid = {h: revision(api, h) for h in (h_dst, h_src, h_other)}
    assert mid[h_dst] > before[h_dst]
    assert (mid[h_src], mid[h_other]) == (before[h_src], before[h_other])
    flow = api.tap_flow(ts, source_port=src["id"])
    after = {h: revision(api, h) for h in (h_dst, h_src, h_other)}
    assert after[h_dst] > mid[h_dst] and after[h_src] > mid[h_src]
    assert after[h_other] == before[h_other]
    assert [f["id"] for f in state(api, h_src)["tap_flows"]] == [flow["id"]]
    assert state(api, h_other)["tap_flows"] == []
    # The destination's agent gets another tunnel IP: the source host follows, no one else.
    assert register(api, h_dst, "172.31.1.9").status_code == 200
    assert revision(api, h_src) > after[h_src] and revision(api, h_other) == before[h_other]


def test_a_resource_leaving_a_host_bumps_that_host(api: Api) -> None:
    h_old, h_new = host(), host()
    register(api, h_old)
    register(api, h_new)
    mirror = api.tap_mirror()
    bind(api, h_old, mirror["port_id"])
    old_rev = revision(api, h_old)
    assert [m["id"] for m in state(api, h_old)["tap_mirrors"]] == [mirror["id"]]
    r = api("admin").put(f"/v2.0/ports/{mirror['port_id']}",
                         json={"port": {"binding:host_id": h_new}})
    assert r.status_code == 200
    assert revision(api, h_old) > old_rev and state(api, h_old)["tap_mirrors"] == []
    assert [m["id"] for m in state(api, h_new)["tap_mirrors"]] == [mirror["id"]]


def test_long_poll_answers_only_for_its_own_host(api: Api) -> None:
    h_a, h_b = host(), host()
    register(api, h_a)
    register(api, h_b)
    port_a, port_b = api.port(), api.port()
    bind(api, h_a, port_a["id"])
    bind(api, h_b, port_b["id"])
    known = {h: revision(api, h) for h in (h_a, h_b)}
    answers: dict[str, int] = {}

    def watch(name: str) -> None:
        with api.server.client("service", timeout=90) as c:
            r = c.get(f"{AGENTS}/{name}/desired-state",
                      params={"revision": known[name], "timeout": 45})
            answers[name] = r.json()["desired_state"]["revision"]

    watchers = {h: threading.Thread(target=watch, args=(h,)) for h in (h_a, h_b)}
    for t in watchers.values():
        t.start()
    api.tap_service(port_id=port_a["id"])  # concerns h_a only
    watchers[h_a].join(timeout=40)
    assert answers[h_a] > known[h_a]
    api.tap_service(port_id=port_b["id"])
    b_now = revision(api, h_b)
    watchers[h_b].join(timeout=40)
    # h_b's long-poll answered for the second change, not the first one (it would carry
    # h_b's unchanged revision had the first change woken it).
    assert answers[h_b] == b_now > known[h_b]


def test_deletion_waits_only_for_the_involved_hosts_revision(api: Api) -> None:
    h1, h2 = host(), host()
    register(api, h1)
    register(api, h2)
    ts = api.tap_service()
    bind(api, h1, ts["port_id"])
    rep = {"host": h1, "revision": revision(api, h1), "taas_ids": [],
           "resources": [{"kind": "tap_service", "id": ts["id"], "status": "ACTIVE"}]}
    assert api("service").put(f"{AGENTS}/{h1}/report", json={"report": rep}).status_code == 200
    assert api("a-member").delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    converged = revision(api, h1)  # h1's state without the service
    # Other tenants keep changing other hosts meanwhile.
    other = api.port()
    bind(api, h2, other["id"])
    api.tap_service(port_id=other["id"])
    rep = {"host": h1, "revision": converged, "taas_ids": [], "resources": []}
    assert api("service").put(f"{AGENTS}/{h1}/report", json={"report": rep}).status_code == 200
    neutron_error(api("admin").get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)


def test_reports_cannot_claim_taas_ids_never_given_to_the_host(api: Api) -> None:
    name = host()
    register(api, name)
    ts = api.tap_service()
    bind(api, name, ts["port_id"])
    given = state(api, name)["tap_services"][0]["taas_id"]
    stranger = given + 1 if given < 3999 else given - 1
    rep = {"host": name, "revision": revision(api, name), "taas_ids": [given, stranger],
           "resources": []}
    r = api("service").put(f"{AGENTS}/{name}/report", json={"report": rep})
    assert r.status_code == 200 and r.json()["report"]["taas_ids"] == [given]


def test_unknown_report_fields_are_ignored_and_bad_ones_are_clear_400s(api: Api) -> None:
    name = host()
    register(api, name)
    rep = {"host": name, "revision": 0, "version": 7, "from_the_future": {"x": 1},
           "resources": [], "taas_ids": []}
    assert api("service").put(f"{AGENTS}/{name}/report", json={"report": rep}).status_code == 200
    err = neutron_error(api("service").put(f"{AGENTS}/{name}/report", json={"report": {
        "resources": [{"kind": "tap_flow", "id": "x", "status": "DOWN"}]}}), 400, "InvalidInput")
    assert "resources.0.status" in err["message"]


def test_per_host_credentials_act_for_their_host_only(api: Api) -> None:
    other = host()
    assert register(api, BOUND, who="h1-agent").status_code == 200
    assert register(api, other).status_code == 200  # the cloud-wide credential: any host
    bound = api("h1-agent")
    for resp in (register(api, other, "10.9.9.9", who="h1-agent"),
                 bound.get(f"{AGENTS}/{other}/desired-state"),
                 bound.put(f"{AGENTS}/{other}/ports", json={"ports": []}),
                 bound.put(f"{AGENTS}/{other}/report", json={"report": {"revision": 0}})):
        neutron_error(resp, 403, "HTTPForbidden")
    # Another host's credential cannot re-register this host with its own tunnel IP.
    neutron_error(register(api, BOUND, "10.6.6.6", who="h2-agent"), 403, "HTTPForbidden")
    agent = api("admin").get("/v2.0/agents", params={"host": BOUND}).json()["agents"][0]
    assert agent["configurations"]["tunnel_ip"] == "172.31.1.1"
    assert bound.get(f"{AGENTS}/{BOUND}/desired-state").status_code == 200
    assert bound.put(f"{AGENTS}/{BOUND}/ports", json={"ports": []}).status_code == 200


def test_idle_agent_skips_unchanged_ports_and_reports(api: Api) -> None:
    name = host()
    port = api.port()
    client = ServerClient(api.server.url, api.server.tokens["service"], name)

    class P:
        port_id, ofport, local_vlan, mac, name = port["id"], 1, 1, port["mac_address"], "tap"

    try:
        client.heartbeat("172.31.2.1")
        assert client.report_ports([P()]) == [] and client.skipped == 0
        rep = HostReport(name, revision(api, name), (), ())
        client.report(rep)
        client.heartbeat("172.31.2.1")
        client.report_ports([P()])
        client.report(rep)
        assert client.skipped == 2  # nothing new: neither call was sent
        # The binding changes by another path: the next heartbeat asks for the full set.
        r = api("admin").put(f"/v2.0/ports/{port['id']}",
                             json={"port": {"binding:host_id": "nobody-" + name}})
        assert r.status_code == 200
        client.heartbeat("172.31.2.1")
        client.report_ports([P()])
        assert client.skipped == 2
        got = api("admin").get(f"/v2.0/ports/{port['id']}").json()["port"]
        assert got["binding:host_id"] == name
        # A new report is sent.
        client.report(HostReport(name, rep.revision, (ResourceStatus(
            "tap_service", str(uuid.uuid4()), "ACTIVE"),), ()))
        assert client.skipped == 2
    finally:
        client.close()


def test_heartbeats_are_stored_in_batches(api: Api) -> None:
    name = host()
    assert register(api, name).status_code == 200

    def beat_at() -> str:
        return api("admin").get("/v2.0/agents", params={"host": name}).json()["agents"][0][
            "heartbeat_timestamp"]

    first = beat_at()
    # A heartbeat (same tunnel IP) is queued, then stored by the next flush (each second).
    wait_until(lambda: register(api, name).status_code == 200 and beat_at() > first, 10,
               0.3, "a later heartbeat stored")


def test_a_waiting_long_poll_keeps_its_agent_alive(api: Api) -> None:
    name = host()
    client = ServerClient(api.server.url, api.server.tokens["service"], name)
    try:
        agent = client.heartbeat("172.31.3.1")
        assert agent["watch_keeps_alive"]
        first = agent["heartbeat_timestamp"]
        current = client.get_desired_state(None, 1).revision
        done = threading.Event()

        def watch() -> None:
            client.get_desired_state(current, 30)
            done.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        # No heartbeat is sent, yet the server sees the agent alive: its long-poll waits.
        wait_until(lambda: api("admin").get("/v2.0/agents", params={"host": name}).json()[
            "agents"][0]["heartbeat_timestamp"] > first, 10, 0.3, "liveness from the watch")
        wait_until(lambda: client._watching, 10, what="the watch is waiting")
        skipped = client.skipped
        client.heartbeat("172.31.3.1")  # the client knows: it skips the call
        assert client.skipped == skipped + 1
        register(api, name, "172.31.3.1")  # ends nothing; wake the watch with a change
        api.tap_mirror(port_id=bind_new_port(api, name))
        watcher.join(timeout=40)
        assert done.is_set()
    finally:
        client.close()


def bind_new_port(api: Api, name: str) -> str:
    port = api.port()
    bind(api, name, port["id"])
    return str(port["id"])


def test_agent_calls_keep_what_the_middlewares_give(api: Api) -> None:
    """Heartbeats and long-polls skip FastAPI's routing (api/fastpath.py), not the app's
    middlewares nor its error handling."""
    name = host()
    agent = api("service")
    r = register(api, name)
    assert r.status_code == 200 and r.headers["x-openstack-request-id"].startswith("req-")
    r = agent.get(f"{AGENTS}/{name}/desired-state", params={"timeout": 0})
    assert r.status_code == 200 and r.headers["x-openstack-request-id"].startswith("req-")
    assert r.headers["content-type"] == "application/json"
    assert r.json()["desired_state"]["host"] == name and "report_digest" in r.json()
    r = agent.head(f"{AGENTS}/{name}/desired-state", params={"timeout": 0})
    assert r.status_code == 200 and r.content == b""
    err = neutron_error(agent.get(f"{AGENTS}/{name}/desired-state",
                                  params={"timeout": "soon"}), 400, "InvalidInput")
    assert "timeout must be a number" in err["message"]
    neutron_error(agent.put(f"{AGENTS}/{name}", content=b"{", headers={
        "Content-Type": "application/json"}), 400, "HTTPBadRequest")
    neutron_error(agent.put(f"{AGENTS}/{name}", content=b"x" * 2_000_000, headers={
        "Content-Type": "application/json"}), 413, "HTTPRequestEntityTooLarge")
    for bad in ({}, {"X-Auth-Token": "forged"}):
        with httpx.Client(base_url=api.server.url, headers=bad) as anon:
            neutron_error(anon.put(f"{AGENTS}/{name}", json={"agent": {"tunnel_ip": "10.0.0.9"}}),
                          401, "HTTPUnauthorized")
            neutron_error(anon.get(f"{AGENTS}/{name}/desired-state"), 401, "HTTPUnauthorized")
    neutron_error(api("a-member").get(f"{AGENTS}/{name}/desired-state"), 403)
    # Other methods on these paths are still FastAPI's.
    assert agent.delete(f"{AGENTS}/{name}").status_code == 405
    # The request metrics name them by their route, as FastAPI's own routes.
    metrics = api("admin").get("/metrics").text
    for method, route in (("PUT", "/v2.0/taas-agents/{host}"),
                          ("GET", "/v2.0/taas-agents/{host}/desired-state")):
        assert f'taas_http_request_duration_seconds_count{{method="{method}",route="{route}"}}' \
            in metrics


# ---- a tunnel address that a tap mirror sends to -------------------------------------------

def test_an_agent_cannot_register_a_tap_mirrors_remote_ip(api: Api) -> None:
    """The reverse of the tap mirror's check (test_api_hardening): copies bound for a
    collector must not land in a hypervisor's tunnel endpoint, whichever comes first."""
    ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    mirror = api.tap_mirror(remote_ip=ip)
    fresh, moving = host(), host()
    for tunnel_ip in (ip, f"::ffff:{ip}"):  # the IPv4-mapped spelling reaches the same host
        err = neutron_error(register(api, fresh, tunnel_ip), 409, "TunnelIpInUse")
        assert "remote_ip of a tap mirror" in err["message"]
    admin = api("admin")
    assert admin.get("/v2.0/agents", params={"host": fresh}).json()["agents"] == []
    assert register(api, moving, "172.31.4.1").status_code == 200
    neutron_error(register(api, moving, ip), 409, "TunnelIpInUse")
    (agent,) = admin.get("/v2.0/agents", params={"host": moving}).json()["agents"]
    assert agent["configurations"]["tunnel_ip"] == "172.31.4.1"  # unchanged
    assert register(api, moving, "172.31.4.1").status_code == 200  # heartbeats go on
    assert api("a-member").delete(f"/v2.0/taas/tap_mirrors/{mirror['id']}").status_code == 204
    assert register(api, fresh, ip).status_code == 200  # the address is free again


def test_a_tap_mirror_and_an_agent_racing_for_one_address(
        pg_cluster: str, request: pytest.FixtureRequest) -> None:
    """PostgreSQL (replicas, concurrent transactions): both checks take one advisory lock
    per address, so the second one sees the first one's row and exactly one wins. (SQLite:
    one server process serialises its writes, so the two cannot interleave.)"""
    import sqlalchemy as sa

    from taas.server.db.repositories import lock_address
    from taas.testing.postgres import create_database

    from .conftest import fresh_tunnel_id

    db_url = create_database(pg_cluster, f"taas_{uuid.uuid4().hex[:12]}")
    ip = "198.19.7.7"
    with run_server(db_url=db_url) as srv:
        api = Api(srv)
        port = api.port()
        engine = sa.create_engine(db_url)
        results: dict[str, int] = {}

        def mirror() -> None:
            results["mirror"] = api("a-member").post("/v2.0/taas/tap_mirrors", json={
                "tap_mirror": {"port_id": port["id"], "remote_ip": ip, "mirror_type": "gre",
                               "directions": {"IN": fresh_tunnel_id()}}}).status_code

        def agent() -> None:
            results["agent"] = register(api, "race-host", ip).status_code

        def waiting() -> int:
            with engine.connect() as conn:
                return int(conn.scalar(sa.text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted"
                    " AND d.datname = current_database()")) or 0)

        try:
            with sa.orm.Session(engine) as held:  # plays a third transaction on the address
                lock_address(held, ip)
                threads = [threading.Thread(target=f) for f in (mirror, agent)]
                for n, t in enumerate(threads, 1):
                    t.start()
                    # Each waits on the address's lock: the check comes after it.
                    wait_until(lambda n=n: waiting() == n, 20, 0.05,  # type: ignore[misc]
                               "the request waiting on the address lock")
                held.rollback()
            for t in threads:
                t.join(30)
        finally:
            engine.dispose()
            api.close()
        assert sorted(results.values()) in ([200, 400], [201, 409]), results
