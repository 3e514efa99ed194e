"""Quotas as Neutron does them: limits per project, 409 OverQuota, the /v2.0/quotas API, and
concurrent creates that never pass the limit (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from taas.testing.server import ServerProcess, run_server

from .conftest import Api, neutron_error

TS, TF, TM = "/v2.0/taas/tap_services", "/v2.0/taas/tap_flows", "/v2.0/taas/tap_mirrors"
TFL = "/v2.0/taas/tap_filters"
Q = "/v2.0/quotas"
LIMITS = {"quota_tap_service": 2, "quota_tap_flow": 3, "quota_tap_mirror": 1,
          "quota_tap_filter": 2, "quota_tap_filter_rule": 5}
EXPECTED = {k.removeprefix("quota_"): v for k, v in LIMITS.items()}


@pytest.fixture(scope="module")
def server(db_url: str | None) -> Iterator[ServerProcess]:
    with run_server(db_url=db_url, **LIMITS) as srv:
        yield srv


def count(api: Api, path: str, project: str) -> int:
    key = path.rsplit("/", 1)[-1]
    return len(api("admin").get(path, params={"project_id": project}).json()[key])


def test_show_defaults_and_who_may_read(api: Api) -> None:
    expected = EXPECTED
    assert api("a-member").get(f"{Q}/project-a").json() == {"quota": expected}
    assert api("a-reader").get(f"{Q}/project-a").json() == {"quota": expected}
    assert api("admin").get(f"{Q}/project-z").json() == {"quota": expected}
    assert api("a-member").get(f"{Q}/project-a/default").json() == {"quota": expected}
    neutron_error(api("b-member").get(f"{Q}/project-a"), 403, "PolicyNotAuthorized")
    neutron_error(api("a-member").get(Q), 403, "PolicyNotAuthorized")
    ext = {e["alias"] for e in api("a-member").get("/v2.0/extensions").json()["extensions"]}
    assert {"quotas", "quota_details"} <= ext


def test_over_quota_is_409_and_an_admin_raises_it(api: Api) -> None:
    project = "project-a"
    first = [api.tap_service(name=f"q-ts-{i}") for i in range(2)]
    port = api.port(project)
    before = count(api, TS, project)
    err = neutron_error(api("a-member").post(TS, json={"tap_service": {"port_id": port["id"]}}),
                        409, "OverQuota")
    assert "tap_service" in err["message"]
    assert count(api, TS, project) == before  # nothing was created

    # A member may not raise its own quota; the admin may, and the next create succeeds.
    neutron_error(api("a-member").put(f"{Q}/{project}", json={"quota": {"tap_service": 9}}),
                  403, "PolicyNotAuthorized")
    r = api("admin").put(f"{Q}/{project}", json={"quota": {"tap_service": 3}})
    assert r.status_code == 200 and r.json()["quota"]["tap_service"] == 3
    assert r.json()["quota"]["tap_flow"] == 3  # untouched resources keep the default
    third = api.tap_service(port_id=port["id"], name="q-ts-2")
    listed = api("admin").get(Q).json()["quotas"]
    assert {"project_id": project, "tenant_id": project, **EXPECTED, "tap_service": 3} in listed
    details = api("a-member").get(f"{Q}/{project}/details").json()["quota"]
    assert details["tap_service"] == {"limit": 3, "used": 3, "reserved": 0}

    # Deleting frees room (deleted resources do not count), DELETE resets to the default.
    api("a-member").delete(f"{TS}/{third['id']}")
    assert api("admin").delete(f"{Q}/{project}").status_code == 204
    assert api("a-member").get(f"{Q}/{project}").json()["quota"]["tap_service"] == 2
    for ts in first:
        assert api("a-member").delete(f"{TS}/{ts['id']}").status_code == 204


@pytest.mark.parametrize("body", [
    {"quota": {"tap_service": -2}}, {"quota": {"tap_service": "many"}},
    {"quota": {"tap_service": True}}, {"quota": {"tap_service": 1.5}},
    {"quota": {"network": 5}}, {"quota": {}}, {"quota": []}, {"quotas": {"tap_flow": 1}},
])
def test_bad_quota_updates_are_400_and_change_nothing(api: Api, body: Any) -> None:
    r = api("admin").put(f"{Q}/project-bad", json=body)
    assert r.status_code == 400, r.text
    assert "NeutronError" in r.json()
    assert api("admin").get(f"{Q}/project-bad").json()["quota"]["tap_service"] == 2
    assert "project-bad" not in {q["project_id"] for q in api("admin").get(Q).json()["quotas"]}


def test_unlimited_and_flows_and_mirrors(api: Api) -> None:
    project = "project-b"
    service = api.tap_service("b-member", project=project)
    flows = [api.tap_flow(service, who="b-member") for _ in range(3)]
    src = api.port(project)
    neutron_error(api("b-member").post(TF, json={"tap_flow": {
        "tap_service_id": service["id"], "source_port": src["id"], "direction": "IN"}}),
        409, "OverQuota")
    api("admin").put(f"{Q}/{project}", json={"quota": {"tap_flow": -1}})
    api.tap_flow(service, who="b-member", source_port=src["id"])
    api.tap_mirror("b-member", project=project)
    neutron_error(api("b-member").post(TM, json={"tap_mirror": {
        "port_id": api.port(project)["id"], "directions": {"IN": 777001},
        "remote_ip": "192.0.2.9", "mirror_type": "gre"}}), 409, "OverQuota")
    assert len(flows) == 3
    api("admin").delete(f"{Q}/{project}")


def test_bulk_create_over_quota_creates_nothing(api: Api) -> None:
    project = "project-c"
    ports = [api.port(project)["id"] for _ in range(3)]
    r = api("admin").post(TS, json={"tap_services": [
        {"port_id": p, "project_id": project} for p in ports]})
    neutron_error(r, 409, "OverQuota")
    assert count(api, TS, project) == 0


def test_concurrent_creates_never_pass_the_quota(api: Api, server: ServerProcess) -> None:
    project, limit, attempts = "project-d", 7, 20
    api("admin").put(f"{Q}/{project}", json={"quota": {"tap_service": limit}})
    ports = [api.port(project)["id"] for _ in range(attempts)]

    def create(port_id: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=90,
                          headers=server.headers("admin")) as c:
            return c.post(TS, json={"tap_service": {"port_id": port_id, "project_id": project}})

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        answers = list(pool.map(create, ports))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * limit + [409] * (attempts - limit), [r.text for r in answers]
    assert all(r.json()["NeutronError"]["type"] == "OverQuota"
               for r in answers if r.status_code == 409)
    assert count(api, TS, project) == limit


def rules(n: int, first: int = 1) -> list[dict[str, Any]]:
    return [{"priority": first + i, "action": "mirror", "protocol": "tcp",
             "destination_port_range": str(80 + i)} for i in range(n)]


def filter_rules(api: Api, filter_id: str) -> list[int]:
    r = api("admin").get(f"{TFL}/{filter_id}")
    return [rule["priority"] for rule in r.json()["tap_filter"]["rules"]]


def test_filters_and_their_rules_per_project(api: Api) -> None:
    project, c = "project-e", api("admin")

    def create(n_rules: int) -> httpx.Response:
        return c.post(TFL, json={"tap_filter": {"project_id": project, "rules": rules(n_rules)}})

    first, second = (create(3).json()["tap_filter"], create(2).json()["tap_filter"])
    err = neutron_error(create(0), 409, "OverQuota")  # a third filter
    assert "['tap_filter']" in err["message"]
    c.put(f"{Q}/{project}", json={"quota": {"tap_filter": 3}})
    # 5 rules in use of 5: a filter with one more rule is refused, an empty one is not.
    err = neutron_error(create(1), 409, "OverQuota")
    assert "['tap_filter_rule']" in err["message"]
    assert count(api, TFL, project) == 2
    third = create(0).json()["tap_filter"]
    details = c.get(f"{Q}/{project}/details").json()["quota"]
    assert details["tap_filter"] == {"limit": 3, "used": 3, "reserved": 0}
    assert details["tap_filter_rule"] == {"limit": 5, "used": 5, "reserved": 0}

    # A PUT that adds rules counts the difference; a refused one changes nothing.
    neutron_error(c.put(f"{TFL}/{second['id']}", json={"tap_filter": {"rules": rules(3)}}),
                  409, "OverQuota")
    assert filter_rules(api, second["id"]) == [1, 2]
    assert c.put(f"{TFL}/{first['id']}", json={"tap_filter": {"rules": rules(1)}}
                 ).status_code == 200
    assert c.put(f"{TFL}/{third['id']}", json={"tap_filter": {"rules": rules(2, 7)}}
                 ).status_code == 200
    assert filter_rules(api, third["id"]) == [7, 8]
    # Under a lowered limit a project may still shrink (and delete) what it has.
    c.put(f"{Q}/{project}", json={"quota": {"tap_filter_rule": 1}})
    assert c.put(f"{TFL}/{third['id']}", json={"tap_filter": {"rules": rules(1)}}
                 ).status_code == 200
    neutron_error(c.put(f"{TFL}/{first['id']}", json={"tap_filter": {"rules": rules(2)}}),
                  409, "OverQuota")
    for f in (first, second, third):
        assert c.delete(f"{TFL}/{f['id']}").status_code == 204
    assert c.get(f"{Q}/{project}/details").json()["quota"]["tap_filter_rule"]["used"] == 0
    c.delete(f"{Q}/{project}")


def concurrently(server: ServerProcess, calls: list[tuple[str, str, dict[str, Any]]]
                 ) -> list[httpx.Response]:
    def call(method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=90,
                          headers=server.headers("admin")) as c:
            return c.request(method, path, json=body)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda a: call(*a), calls))


def test_concurrent_filter_creates_and_rule_updates_never_pass_the_quotas(
        api: Api, server: ServerProcess) -> None:
    project, c = "project-f", api("admin")
    c.put(f"{Q}/{project}", json={"quota": {"tap_filter": 4, "tap_filter_rule": -1}})
    body = {"tap_filter": {"project_id": project, "rules": rules(1)}}
    answers = concurrently(server, [("POST", TFL, body)] * 12)
    assert sorted(r.status_code for r in answers) == [201] * 4 + [409] * 8, [
        r.text for r in answers]
    assert count(api, TFL, project) == 4

    # Every filter tries to grow by 3 rules at once: 4 in use + 3 + 3 fit 10, a third not.
    c.put(f"{Q}/{project}", json={"quota": {"tap_filter_rule": 10}})
    ids = [r.json()["tap_filter"]["id"] for r in answers if r.status_code == 201]
    answers = concurrently(server, [("PUT", f"{TFL}/{i}", {"tap_filter": {"rules": rules(4)}})
                                    for i in ids])
    assert sorted(r.status_code for r in answers) == [200] * 2 + [409] * 2, [
        r.text for r in answers]
    assert all(r.json()["NeutronError"]["type"] == "OverQuota"
               for r in answers if r.status_code == 409)
    assert c.get(f"{Q}/{project}/details").json()["quota"]["tap_filter_rule"]["used"] == 10
