"""Counters through a real taas-server (SQLite and PostgreSQL): the accumulation of the agents'
raw flow counters (growth, agent restart, flow re-install, port move, reports arriving out of
order), `statistics` in every GET, and GET /metrics (admin only, values equal to the GETs')."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taas.common.desired_state import CounterSlot
from taas.server.services.counters import accumulate
from taas.testing.server import free_port, run_server

from .conftest import Api, neutron_error

AGENTS = "/v2.0/taas-agents"
T0 = 1_790_000_000_000  # an install time (ms)


def slot(kind: str, rid: str, counter: str, packets: int, bytes_: int = 0, epoch: int = T0,
         name: str = "s1", direction: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "id": rid, "counter": counter, "slot": name, "epoch": epoch,
            "packets": packets, "bytes": bytes_, "direction": direction}


class Host:
    """A registered agent that sends counters reports (its own boot and sequence)."""

    def __init__(self, api: Api) -> None:
        self.api, self.name = api, f"c-{uuid.uuid4().hex[:8]}"
        self.boot, self.seq = uuid.uuid4().hex, 0
        r = api("service").put(f"{AGENTS}/{self.name}", json={"agent": {"tunnel_ip":
                                                                       "172.31.5.1"}})
        assert r.status_code == 200, r.text
        assert r.json()["agent"]["counters_interval"] == 5.0  # the server takes counters

    def restart(self) -> None:
        self.boot, self.seq = uuid.uuid4().hex, 0

    def send(self, *slots: dict[str, Any], seq: int | None = None, **extra: Any) -> Any:
        if seq is None:
            self.seq += 1
            seq = self.seq
        r = self.api("service").put(f"{AGENTS}/{self.name}/counters", json={"counters": {
            "host": self.name, "boot": self.boot, "seq": seq, "counters": list(slots),
            **extra}})
        assert r.status_code == 200, r.text
        return r.json()["counters"]


@pytest.fixture
def deleted_after(api: Api) -> Iterator[None]:
    """The tap services and mirrors a test made go afterwards (the shared server's taas_ids
    are few): deleting a service deletes its flows."""
    before = {k: _ids(api, k) for k in ("tap_service", "tap_mirror")}
    yield
    for kind, had in before.items():
        for rid in _ids(api, kind) - had:
            api("admin").delete(f"/v2.0/taas/{kind}s/{rid}")
        assert _ids(api, kind) <= had  # no host holds them: gone at once


def _ids(api: Api, kind: str) -> set[str]:
    r = api("admin").get(f"/v2.0/taas/{kind}s", params={"fields": "id"})
    return {x["id"] for x in r.json()[f"{kind}s"]}


def stats(api: Api, kind: str, rid: str) -> dict[str, Any]:
    r = api("a-member").get(f"/v2.0/taas/{kind}s/{rid}")
    assert r.status_code == 200, r.text
    return r.json()[kind]["statistics"]


@pytest.mark.usefixtures("deleted_after")
def test_accumulation_restart_reinstall_move_and_order(api: Api) -> None:
    ts = api.tap_service()
    tf = api.tap_flow(ts)
    assert stats(api, "tap_flow", tf["id"]) == {
        "mirrored_packets": 0, "mirrored_bytes": 0, "filtered_packets": 0, "dropped_packets": 0,
        "updated_at": None}
    h1, h2 = Host(api), Host(api)
    f = tf["id"]

    def mirrored() -> tuple[int, int]:
        s = stats(api, "tap_flow", f)
        return s["mirrored_packets"], s["mirrored_bytes"]

    # Growth of one flow, and a second flow (slot) of the same tap flow.
    h1.send(slot("tap_flow", f, "mirrored", 10, 1000))
    h1.send(slot("tap_flow", f, "mirrored", 15, 1500),
            slot("tap_flow", f, "mirrored", 4, 400, name="s2"))
    assert mirrored() == (19, 1900)
    # The agent restarts: same flows, same install time (give or take ms): only growth.
    h1.restart()
    h1.send(slot("tap_flow", f, "mirrored", 17, 1700, epoch=T0 + 7))
    assert mirrored() == (21, 2100)
    # The flow is re-installed (its counters restart, a new install time): all of it is new.
    h1.send(slot("tap_flow", f, "mirrored", 3, 300, epoch=T0 + 60_000))
    assert mirrored() == (24, 2400)
    # OVS restarted within the tolerance of the old install time: lower values say restart.
    h1.send(slot("tap_flow", f, "mirrored", 1, 100, epoch=T0 + 60_500))
    assert mirrored() == (25, 2500)
    # A report that arrives after a newer one of the same agent process is ignored.
    h1.send(slot("tap_flow", f, "mirrored", 9, 900, epoch=T0 + 60_500))
    assert h1.send(slot("tap_flow", f, "mirrored", 2, 200, epoch=T0 + 60_500),
                   seq=h1.seq - 1)["accepted"] == 0
    assert mirrored() == (33, 3300)
    # The source port moves: the other host's flows (same slot name) add to the total.
    h2.send(slot("tap_flow", f, "mirrored", 5, 500))
    h2.send(slot("tap_flow", f, "mirrored", 7, 700), slot("tap_flow", f, "filtered", 4, 40))
    s = stats(api, "tap_flow", f)
    assert (s["mirrored_packets"], s["mirrored_bytes"], s["filtered_packets"]) == (40, 4000, 4)
    assert s["updated_at"] is not None
    # Lists carry statistics too.
    listed = api("a-member").get("/v2.0/taas/tap_flows", params={"id": f}).json()["tap_flows"]
    assert listed[0]["statistics"] == s


@pytest.mark.usefixtures("deleted_after")
def test_service_and_mirror_statistics_and_unknown_ids(api: Api) -> None:
    ts = api.tap_service()
    tm = api.tap_mirror(directions={"IN": 4100 + uuid.uuid4().int % 10**6,
                                    "OUT": 2_000_000 + uuid.uuid4().int % 10**6})
    h = Host(api)
    out = h.send(slot("tap_service", ts["id"], "delivered", 6, 600),
                 slot("tap_mirror", tm["id"], "sent", 3, 300, name="m1", direction="IN"),
                 slot("tap_mirror", tm["id"], "sent", 2, 200, name="m2", direction="OUT"),
                 slot("tap_flow", str(uuid.uuid4()), "mirrored", 1))  # deleted: ignored
    assert out["accepted"] == 2
    assert stats(api, "tap_service", ts["id"]) | {"updated_at": None} == {
        "delivered_packets": 6, "delivered_bytes": 600, "dropped_packets": 0,
        "updated_at": None}
    m = stats(api, "tap_mirror", tm["id"])
    assert (m["IN"], m["OUT"]) == ({"sent_packets": 3, "sent_bytes": 300, "dropped_packets": 0},
                                   {"sent_packets": 2, "sent_bytes": 200, "dropped_packets": 0})


def test_bad_counters_reports_are_400_and_change_nothing(api: Api) -> None:
    h = Host(api)
    put = api("service").put
    for body in ({"counters": []}, {"counters": {"boot": "b", "seq": -1}},
                 {"counters": {"boot": "b", "seq": 1, "counters": [{"kind": "tap_flow"}]}},
                 {"counters": {"boot": "b", "seq": 1, "host": "other"}}):
        neutron_error(put(f"{AGENTS}/{h.name}/counters", json=body), 400, "InvalidInput")
    neutron_error(put(f"{AGENTS}/nobody-{h.name}/counters", json={"counters": {
        "boot": "b", "seq": 1}}), 404, "AgentNotFound")
    neutron_error(api("a-member").put(f"{AGENTS}/{h.name}/counters", json={"counters": {
        "boot": "b", "seq": 1}}), 403)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.usefixtures("deleted_after")
def test_metrics_parse_equal_the_gets_and_are_admin_only(api: Api) -> None:
    ts = api.tap_service()
    tf = api.tap_flow(ts)
    h = Host(api)
    h.send(slot("tap_flow", tf["id"], "mirrored", 11, 1100),
           slot("tap_flow", tf["id"], "filtered", 2, 20, name="s9"),
           slot("tap_service", ts["id"], "delivered", 11, 1100),
           syncs={"count": 3, "seconds": 0.25, "last_ms": 50.0})
    neutron_error(api("a-member").get("/metrics"), 403, "PolicyNotAuthorized")
    r = api("admin").get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    flow = stats(api, "tap_flow", tf["id"])
    svc = stats(api, "tap_service", ts["id"])

    def labels(kind: str, rid: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({"project_id": tf["project_id"], "resource_kind": kind,
                             "resource_id": rid, "direction": ""}.items()))

    fl, sl = labels("tap_flow", tf["id"]), labels("tap_service", ts["id"])
    assert got[("taas_mirrored_packets_total", fl)] == flow["mirrored_packets"] == 11
    assert got[("taas_mirrored_bytes_total", fl)] == flow["mirrored_bytes"] == 1100
    assert got[("taas_filtered_packets_total", fl)] == flow["filtered_packets"] == 2
    assert got[("taas_dropped_packets_total", fl)] == flow["dropped_packets"] == 0
    assert got[("taas_delivered_packets_total", sl)] == svc["delivered_packets"] == 11
    host = (("host", h.name),)
    assert got[("taas_agent_sync_duration_seconds_count", host)] == 3
    assert got[("taas_agent_sync_duration_seconds_sum", host)] == 0.25
    # Request latencies by route template, never the raw path.
    routes = {dict(k[1]).get("route") for k in got if k[0].startswith("taas_http_request")}
    assert "/v2.0/taas/tap_flows/{tap_flow_id}" in routes
    assert not any(tf["id"] in (r or "") for r in routes)


def test_accumulate_is_pure_and_keeps_the_first_epoch() -> None:
    s = CounterSlot("tap_flow", "f", "mirrored", "s", T0, 5, 50)
    doc = accumulate(None, "h", [s], __import__("datetime").datetime(2026, 1, 1))
    again = accumulate(doc, "h", [CounterSlot("tap_flow", "f", "mirrored", "s", T0 + 1500,
                                              8, 80)], __import__("datetime").datetime(2026, 1, 1))
    assert doc["totals"]["mirrored"] == [5, 50]  # the input document is not changed
    assert again["totals"]["mirrored"] == [8, 80] and again["slots"]["h|s|mirrored"][0] == T0


def test_unauthenticated_listener_and_noauth_admin() -> None:
    """metrics_port serves the same metrics without a token; under noauth a caller without
    identity headers is admin and may read /metrics, a project member may not."""
    port = free_port()
    with run_server(metrics_port=port) as srv:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"taas_mirrored_packets", "taas_http_request_duration_seconds"} <= names
        assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 401
    with run_server(auth_strategy="noauth") as srv:
        assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 200
        member = httpx.get(f"{srv.url}/metrics", timeout=10,
                           headers={"X-Project-Id": "p1", "X-Roles": "member"})
        neutron_error(member, 403, "PolicyNotAuthorized")
