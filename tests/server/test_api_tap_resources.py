"""Tap services, flows and mirrors over real HTTP: wire format, rules and error paths."""

from __future__ import annotations

import uuid

import pytest

from .conftest import Api, fresh_tunnel_id, neutron_error

TS, TF, TM = "/v2.0/taas/tap_services", "/v2.0/taas/tap_flows", "/v2.0/taas/tap_mirrors"


def test_version_discovery_needs_no_token(api: Api) -> None:
    import httpx

    r = httpx.get(api.server.url + "/")
    assert r.status_code == 200
    (version,) = r.json()["versions"]
    assert version["id"] == "v2.0" and version["status"] == "CURRENT"
    assert version["links"][0] == {"rel": "self", "href": api.server.url + "/v2.0/"}
    r = httpx.get(api.server.url + "/v2.0/")
    assert r.status_code == 200
    assert "tap_services" in {res["collection"] for res in r.json()["resources"]}


def test_extensions_listed(api: Api) -> None:
    exts = api("a-reader").get("/v2.0/extensions").json()["extensions"]
    assert {e["alias"] for e in exts} == {
        "taas", "taas-vlan-filter", "tap-mirror", "tap-mirror-both-direction", "quotas",
        "quota_details", "taas-tap-filter", "taas-limits"}
    assert all(set(e) >= {"alias", "name", "description", "updated", "links"} for e in exts)


@pytest.mark.parametrize("headers", [{}, {"X-Auth-Token": "no-such-token"}])
def test_missing_or_unknown_token_is_401(api: Api, headers: dict[str, str]) -> None:
    import httpx

    for path in (TS, TF, TM, "/v2.0/ports", "/v2.0/networks", "/v2.0/extensions"):
        neutron_error(httpx.get(api.server.url + path, headers=headers), 401)


def test_tap_service_lifecycle(api: Api) -> None:
    port = api.port()
    c = api("a-member")
    r = c.post(TS, json={"tap_service": {"port_id": port["id"], "name": "ids"}})
    assert r.status_code == 201
    ts = r.json()["tap_service"]
    assert ts == {"id": ts["id"], "tenant_id": "project-a", "project_id": "project-a",
                  "name": "ids", "description": "", "port_id": port["id"], "status": "DOWN",
                  "max_pps": None, "max_kbps": None,
                  "statistics": {"delivered_packets": 0, "delivered_bytes": 0,
                                 "dropped_packets": 0, "updated_at": None}}
    assert c.get(f"{TS}/{ts['id']}").json()["tap_service"] == ts
    assert ts["id"] in {s["id"] for s in c.get(TS).json()["tap_services"]}
    r = c.put(f"{TS}/{ts['id']}", json={"tap_service": {"name": "n2", "description": "d"}})
    assert r.status_code == 200
    assert (r.json()["tap_service"]["name"], r.json()["tap_service"]["description"]) == ("n2", "d")
    err = neutron_error(c.put(f"{TS}/{ts['id']}", json={"tap_service": {"port_id": port["id"]}}),
                        400)
    assert "port_id" in err["message"]
    assert c.delete(f"{TS}/{ts['id']}").status_code == 204
    neutron_error(c.get(f"{TS}/{ts['id']}"), 404, "TapServiceNotFound")
    neutron_error(c.delete(f"{TS}/{ts['id']}"), 404, "TapServiceNotFound")


def _revision(api: Api) -> int:
    r = api("service").get("/v2.0/taas-agents/no-such-host/desired-state")
    assert r.status_code == 200, r.text
    return r.json()["desired_state"]["revision"]


def test_empty_put_is_a_no_op_200(api: Api) -> None:
    """Neutron: PUT with an empty resource body changes nothing and answers the resource."""
    ts = api.tap_service(name="keep", description="d")
    tf = api.tap_flow(ts, name="keep-f")
    tm = api.tap_mirror(name="keep-m")
    port = api.port(name="keep-p")
    c = api("a-member")
    before = _revision(api)
    for path, key, item, who in ((TS, "tap_service", ts, "a-member"),
                                 (TF, "tap_flow", tf, "a-member"),
                                 (TM, "tap_mirror", tm, "a-member"),
                                 ("/v2.0/ports", "port", port, "admin")):
        r = api(who).put(f"{path}/{item['id']}", json={key: {}})
        assert r.status_code == 200, r.text
        got = r.json()[key]
        assert {k: got[k] for k in item if k != "status"} == {
            k: v for k, v in item.items() if k != "status"}
        # Non-updatable attributes stay 400 and change nothing.
        neutron_error(api(who).put(f"{path}/{item['id']}",
                                   json={key: {"name": "x", "id": item["id"]}}), 400)
        assert api(who).get(f"{path}/{item['id']}").json()[key]["name"] == item["name"]
    assert _revision(api) == before  # nothing changed, no agent is woken
    # Still 404 for another project's resource, 403 for a reader.
    neutron_error(api("b-member").put(f"{TS}/{ts['id']}", json={"tap_service": {}}), 404)
    neutron_error(api("a-reader").put(f"{TS}/{ts['id']}", json={"tap_service": {}}), 403)
    assert c.get(f"{TS}/{ts['id']}").json()["tap_service"]["name"] == "keep"


def test_tap_service_port_rules(api: Api) -> None:
    c = api("a-member")
    neutron_error(c.post(TS, json={"tap_service": {"port_id": str(uuid.uuid4())}}), 404,
                  "PortNotFound")
    other = api.port("project-b")
    neutron_error(c.post(TS, json={"tap_service": {"port_id": other["id"]}}), 403,
                  "PortDoesNotBelongToTenant")
    ts = api.tap_service()
    err = neutron_error(c.post(TS, json={"tap_service": {"port_id": ts["port_id"]}}), 409)
    assert ts["port_id"] in err["message"]
    # An admin acting for project-a is checked against project-a.
    neutron_error(api("admin").post(TS, json={"tap_service": {
        "port_id": other["id"], "project_id": "project-a"}}), 403, "PortDoesNotBelongToTenant")
    r = api("admin").post(TS, json={"tap_service": {"port_id": other["id"],
                                                    "tenant_id": "project-b"}})
    assert r.status_code == 201 and r.json()["tap_service"]["project_id"] == "project-b"


@pytest.mark.parametrize("body,needle", [
    ({}, "port_id"),
    ({"port_id": "not-a-uuid"}, "UUID"),
    ({"port_id": 5}, "port_id"),
    ({"port_id": None}, "port_id"),
    ({"port_id": "PORT", "name": "x" * 256}, "255"),
    ({"port_id": "PORT", "description": "x" * 1025}, "1024"),
    ({"port_id": "PORT", "name": 7}, "name"),
    ({"port_id": "PORT", "status": "ACTIVE"}, "status"),
    ({"port_id": "PORT", "bogus": 1}, "bogus"),
])
def test_tap_service_bad_bodies_are_400(api: Api, body: dict, needle: str) -> None:
    port = api.port()
    body = {k: (port["id"] if v == "PORT" else v) for k, v in body.items()}
    before = len(api("admin").get(TS).json()["tap_services"])
    err = neutron_error(api("a-member").post(TS, json={"tap_service": body}), 400)
    assert needle in err["message"]
    assert len(api("admin").get(TS).json()["tap_services"]) == before


def test_tap_flow_lifecycle_and_rules(api: Api) -> None:
    ts = api.tap_service()
    src = api.port()
    c = api("a-member")
    r = c.post(TF, json={"tap_flow": {"tap_service_id": ts["id"], "source_port": src["id"],
                                      "direction": "IN", "vlan_filter": "10-20,30"}})
    assert r.status_code == 201, r.text
    tf = r.json()["tap_flow"]
    assert tf["status"] == "DOWN" and tf["vlan_filter"] == "10-20,30"
    assert tf["tenant_id"] == tf["project_id"] == "project-a"
    assert tf["name"] == "" and tf["description"] == ""
    # Same (source, service) pair again: 409.
    neutron_error(c.post(TF, json={"tap_flow": {"tap_service_id": ts["id"],
                                                "source_port": src["id"], "direction": "OUT"}}),
                  409)
    # The service's own destination may not feed it.
    err = neutron_error(c.post(TF, json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": ts["port_id"], "direction": "OUT"}}), 400)
    assert "destination" in err["message"]
    # Another project's source port / service.
    other_port = api.port("project-b")
    neutron_error(c.post(TF, json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": other_port["id"], "direction": "IN"}}),
        403, "PortDoesNotBelongToTenant")
    other_ts = api.tap_service("b-member", project="project-b")
    neutron_error(c.post(TF, json={"tap_flow": {
        "tap_service_id": other_ts["id"], "source_port": src["id"], "direction": "IN"}}),
        403, "TapServiceNotBelongToTenant")
    neutron_error(c.post(TF, json={"tap_flow": {
        "tap_service_id": str(uuid.uuid4()), "source_port": src["id"], "direction": "IN"}}),
        404, "TapServiceNotFound")
    # PUT: name/description only.
    neutron_error(c.put(f"{TF}/{tf['id']}", json={"tap_flow": {"direction": "OUT"}}), 400)
    neutron_error(c.put(f"{TF}/{tf['id']}", json={"tap_flow": {"vlan_filter": "1"}}), 400)
    assert c.put(f"{TF}/{tf['id']}", json={"tap_flow": {"name": "f"}}).json()["tap_flow"][
        "name"] == "f"
    # One source port may feed several services.
    ts2 = api.tap_service()
    api.tap_flow(ts2, source_port=src["id"])


@pytest.mark.parametrize("vlan_filter", ["10-5", "4095", "0-4095", "abc", "1,,2", "1-2-3",
                                         "", " 1", "1,", 12, "9999"])
def test_bad_vlan_filter_is_400(api: Api, vlan_filter: object) -> None:
    ts = api.tap_service()
    src = api.port()
    err = neutron_error(api("a-member").post(TF, json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": src["id"], "direction": "BOTH",
        "vlan_filter": vlan_filter}}), 400)
    assert "vlan_filter" in err["message"]
    assert api("a-member").get(TF, params={"tap_service_id": ts["id"]}).json()["tap_flows"] == []


@pytest.mark.parametrize("direction", ["in", "ANY", "", None, 1])
def test_bad_direction_is_400(api: Api, direction: object) -> None:
    ts = api.tap_service()
    neutron_error(api("a-member").post(TF, json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": api.port()["id"], "direction": direction}}),
        400)


def test_deleting_a_tap_service_deletes_its_flows(api: Api) -> None:
    ts = api.tap_service()
    flows = [api.tap_flow(ts) for _ in range(3)]
    c = api("a-member")
    assert c.delete(f"{TS}/{ts['id']}").status_code == 204
    for f in flows:
        neutron_error(c.get(f"{TF}/{f['id']}"), 404, "TapFlowNotFound")


def test_tap_mirror_lifecycle_and_rules(api: Api) -> None:
    port = api.port()
    c = api("a-member")
    t_in, t_out = fresh_tunnel_id(), fresh_tunnel_id()
    body = {"port_id": port["id"], "directions": {"IN": t_in, "OUT": str(t_out)},
            "remote_ip": "2001:db8::1", "mirror_type": "erspanv1", "name": "m"}
    r = c.post(TM, json={"tap_mirror": body})
    assert r.status_code == 201, r.text
    tm = r.json()["tap_mirror"]
    assert tm["directions"] == {"IN": t_in, "OUT": t_out}
    assert tm["status"] == "DOWN" and tm["mirror_type"] == "erspanv1"
    assert tm["tenant_id"] == tm["project_id"] == "project-a"
    # The same tunnel id is a conflict in any project.
    other = api.port("project-b")
    neutron_error(api("b-member").post(TM, json={"tap_mirror": {
        "port_id": other["id"], "directions": {"BOTH": t_in}, "remote_ip": "192.0.2.1",
        "mirror_type": "gre"}}), 409, "TapMirrorTunnelConflict")
    neutron_error(c.put(f"{TM}/{tm['id']}", json={"tap_mirror": {"remote_ip": "192.0.2.2"}}),
                  400)
    assert c.put(f"{TM}/{tm['id']}", json={"tap_mirror": {"description": "x"}}).status_code == 200
    assert c.delete(f"{TM}/{tm['id']}").status_code == 204
    neutron_error(c.get(f"{TM}/{tm['id']}"), 404, "TapMirrorNotFound")
    # Deleting frees its tunnel ids.
    api.tap_mirror(directions={"IN": t_in})


@pytest.mark.parametrize("patch,needle", [
    ({"directions": {}}, "directions"),
    ({"directions": {"UP": 1}}, "UP"),
    ({"directions": {"IN": -1}}, "directions.IN"),
    ({"directions": {"IN": 2**32}}, "directions.IN"),
    ({"directions": {"IN": "x"}}, "directions.IN"),
    ({"directions": {"IN": 1.5}}, "directions.IN"),
    ({"directions": {"IN": True}}, "directions.IN"),
    ({"directions": [1]}, "directions"),
    ({"directions": {"IN": 5, "OUT": 5}}, "own tunnel"),
    ({"remote_ip": "300.1.1.1"}, "remote_ip"),
    ({"remote_ip": "host.example"}, "remote_ip"),
    ({"remote_ip": None}, "remote_ip"),
    ({"mirror_type": "vxlan"}, "mirror_type"),
    ({"mirror_type": None}, "mirror_type"),
])
def test_bad_tap_mirror_is_400(api: Api, patch: dict, needle: str) -> None:
    body = {"port_id": api.port()["id"], "directions": {"IN": fresh_tunnel_id()},
            "remote_ip": "192.0.2.1", "mirror_type": "gre", **patch}
    err = neutron_error(api("a-member").post(TM, json={"tap_mirror": body}), 400)
    assert needle in err["message"]


def test_bulk_create_is_all_or_nothing(api: Api) -> None:
    c = api("a-member")
    ports = [api.port() for _ in range(3)]
    r = c.post(TS, json={"tap_services": [{"port_id": p["id"], "name": f"b{i}"}
                                          for i, p in enumerate(ports)]})
    assert r.status_code == 201, r.text
    created = r.json()["tap_services"]
    assert [s["name"] for s in created] == ["b0", "b1", "b2"]
    # A bad third item: nothing of the batch is created.
    fresh = [api.port() for _ in range(2)]
    before = {s["id"] for s in c.get(TS).json()["tap_services"]}
    neutron_error(c.post(TS, json={"tap_services": [
        {"port_id": fresh[0]["id"]}, {"port_id": fresh[1]["id"]}, {"port_id": ports[0]["id"]}]}),
        409)
    assert {s["id"] for s in c.get(TS).json()["tap_services"]} == before
    # Flows too.
    src = [api.port() for _ in range(2)]
    r = c.post(TF, json={"tap_flows": [
        {"tap_service_id": created[0]["id"], "source_port": p["id"], "direction": "IN"}
        for p in src]})
    assert r.status_code == 201 and len(r.json()["tap_flows"]) == 2
    neutron_error(c.post(TF, json={"tap_flows": [
        {"tap_service_id": created[1]["id"], "source_port": src[0]["id"], "direction": "IN"},
        {"tap_service_id": created[1]["id"], "source_port": src[1]["id"], "direction": "UP"}]}),
        400)
    assert c.get(TF, params={"tap_service_id": created[1]["id"]}).json()["tap_flows"] == []
    # Mirrors have no bulk create.
    neutron_error(c.post(TM, json={"tap_mirrors": []}), 400)


def test_list_filters_fields_sort_and_pages(api: Api) -> None:
    c = api("b-member")
    tag = uuid.uuid4().hex[:6]
    made = [api.tap_service("b-member", project="project-b", name=f"{tag}-{i}")
            for i in range(5)]
    ids = [s["id"] for s in made]
    # Filters: repeated = OR; unknown query parameters are ignored.
    r = c.get(TS, params=[("name", f"{tag}-1"), ("name", f"{tag}-3"), ("shared", "x")])
    assert sorted(s["name"] for s in r.json()["tap_services"]) == [f"{tag}-1", f"{tag}-3"]
    r = c.get(TS, params={"port_id": made[2]["port_id"]})
    assert [s["id"] for s in r.json()["tap_services"]] == [ids[2]]
    # fields (repeatable).
    r = c.get(TS, params=[("fields", "id"), ("fields", "name"), ("name", f"{tag}-0")])
    assert r.json()["tap_services"] == [{"id": ids[0], "name": f"{tag}-0"}]
    assert set(c.get(f"{TS}/{ids[0]}", params={"fields": "status"}).json()["tap_service"]) == {
        "status"}
    # Sort.
    names = [f"{tag}-{i}" for i in range(5)]
    r = c.get(TS, params=[("sort_key", "name"), ("sort_dir", "desc")] +
              [("name", n) for n in names])
    assert [s["name"] for s in r.json()["tap_services"]] == names[::-1]
    neutron_error(c.get(TS, params={"sort_key": "bogus"}), 400)
    neutron_error(c.get(TS, params=[("sort_key", "name"), ("sort_dir", "up")]), 400)
    # Pages with Neutron's links.
    base = [("sort_key", "name"), ("sort_dir", "asc")] + [("name", n) for n in names]
    seen: list[str] = []
    r = c.get(TS, params=base + [("limit", "2")])
    pages = 0
    while True:
        pages += 1
        body = r.json()
        seen += [s["name"] for s in body["tap_services"]]
        nxt = [link for link in body.get("tap_services_links", []) if link["rel"] == "next"]
        if not nxt:
            break
        r = c.get(nxt[0]["href"])
    assert seen == names and pages == 3
    prev = [link for link in body["tap_services_links"] if link["rel"] == "previous"]
    assert prev
    back = c.get(prev[0]["href"]).json()["tap_services"]
    assert [s["name"] for s in back] == names[2:4]
    neutron_error(c.get(TS, params={"limit": "x"}), 400)
    neutron_error(c.get(TS, params={"limit": "-1"}), 400)


BAD_REQUESTS = [
    ("post", TS, {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("post", TS, {"content": b"", "headers": {"Content-Type": "application/json"}}),
    ("post", TS, {"content": b'{"tap_service": {}}', "headers": {"Content-Type": "text/plain"}}),
    ("post", TS, {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
    ("post", TS, {"json": []}),
    ("post", TS, {"json": "x"}),
    ("post", TS, {"json": None}),
    ("post", TS, {"json": {"tap_service": []}}),
    ("post", TS, {"json": {"tap_service": None}}),
    ("post", TS, {"json": {"tap_service": {}, "extra": 1}}),
    ("post", TS, {"json": {"tap_services": {}}}),
    ("post", TS, {"json": {"tap_services": [1, 2]}}),
    ("post", TS, {"json": {"tap_services": []}}),
    ("post", TF, {"json": {"tap_flow": {"tap_service_id": [], "source_port": {},
                                        "direction": {}}}}),
    ("post", TF, {"json": {"tap_flow": {"tap_service_id": "x" * 5000}}}),
    ("post", TM, {"json": {"tap_mirror": {"port_id": 1.5, "directions": None}}}),
    ("post", "/v2.0/networks", {"json": {"network": {"provider:segmentation_id": "abc"}}}),
    ("post", "/v2.0/networks", {"json": {"network": {"provider:segmentation_id": 2**40}}}),
    ("post", "/v2.0/networks", {"json": {"network": {"shared": True}}}),
    ("post", "/v2.0/networks", {"json": {"network": {"admin_state_up": "maybe"}}}),
    ("post", "/v2.0/ports", {"json": {"port": {"network_id": "x", "mac_address": "zz"}}}),
    ("post", "/v2.0/ports", {"json": {"port": {"fixed_ips": "x"}}}),
    ("put", f"{TS}/{uuid.uuid4()}", {"json": {"tap_service": {"name": 1}}}),
    ("put", f"{TS}/{uuid.uuid4()}", {"json": {"tap_flow": {"name": "x"}}}),
    ("get", TS, {"params": {"page_reverse": "perhaps", "limit": "1"}}),
    ("get", TS, {"params": {"sort_key": "name", "sort_dir": "sideways"}}),
    ("get", "/v2.0/taas-agents/h/desired-state", {"params": {"revision": "x"}}),
    ("get", "/v2.0/taas-agents/h/desired-state", {"params": {"timeout": "999"}}),
    ("put", "/v2.0/taas-agents/h", {"json": {"agent": {"tunnel_ip": "nope"}}}),
    ("put", "/v2.0/taas-agents/h", {"json": {"agent": []}}),
    ("put", "/v2.0/taas-agents/h/report", {"json": {"report": {"resources": "x"}}}),
    ("patch", TS, {"json": {}}),
    ("post", TS, {"json": {"tap_service": {"port_id": "PORT", "name": "a\x00b"}}}),
    ("post", TS, {"content": b"[" * 200000, "headers": {"Content-Type": "application/json"}}),
    ("post", TS, {"content": b'{"tap_service": {"port_id": NaN}}'}),
    ("post", TS, {"content": b"x" * (2 * 1024 * 1024)}),
    ("get", TS, {"params": {"name": "a\x00b"}}),
    ("get", f"{TS}/a%00b", {}),
    ("get", "/v2.0/networks", {"params": {"provider:segmentation_id": str(2**70)}}),
    ("get", f"{TS}/" + "x" * 5000, {}),
    ("put", "/v2.0/taas-agents/h%00x", {"json": {"agent": {"tunnel_ip": "10.0.0.1"}}}),
    ("put", "/v2.0/taas-agents/" + "h" * 300, {"json": {"agent": {"tunnel_ip": "10.0.0.1"}}}),
    ("get", "/v2.0/nothing-here", {}),
]


@pytest.mark.parametrize("method,path,kwargs", BAD_REQUESTS)
def test_bad_requests_are_neutron_4xx_never_422_or_500(api: Api, method: str, path: str,
                                                     kwargs: dict) -> None:
    r = api("admin").request(method.upper(), path, **kwargs)
    assert 400 <= r.status_code < 500 and r.status_code != 422, (r.status_code, r.text)
    assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
