"""Tap filters over real HTTP: CRUD in Neutron envelopes, the rule schema's 400s, a tap flow's
tap_filter_id (same project, PUT may change it, 409 on deleting a filter in use), and the
filter in the source host's desired state (a PUT of its rules republishes it)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .conftest import Api, neutron_error

TFL, TF = "/v2.0/taas/tap_filters", "/v2.0/taas/tap_flows"
AGENTS = "/v2.0/taas-agents"
WEB = {"priority": 10, "action": "mirror", "protocol": "tcp", "destination_port_range": "80"}


def create(api: Api, who: str = "a-member", **attrs: Any) -> dict[str, Any]:
    r = api(who).post(TFL, json={"tap_filter": attrs})
    assert r.status_code == 201, r.text
    return r.json()["tap_filter"]


def test_crud_in_neutron_envelopes_and_normalized_rules(api: Api) -> None:
    f = create(api, name="web", rules=[WEB, {"priority": 5, "action": "skip",
                                             "source_ip_prefix": "10.1.2.3/16",
                                             "protocol": 17}])
    assert f["default_action"] == "skip" and f["name"] == "web"
    assert f["project_id"] == f["tenant_id"] == "project-a"
    # Sorted by priority, every key present, CIDR normalized, protocol number as text.
    assert [r["priority"] for r in f["rules"]] == [5, 10]
    assert f["rules"][0] == {"priority": 5, "action": "skip", "direction": None,
                             "ethertype": None, "protocol": "17",
                             "source_ip_prefix": "10.1.0.0/16",
                             "destination_ip_prefix": None, "source_port_range": None,
                             "destination_port_range": None}
    c = api("a-member")
    assert c.get(f"{TFL}/{f['id']}").json()["tap_filter"] == f
    assert f["id"] in {x["id"] for x in c.get(TFL).json()["tap_filters"]}
    r = c.put(f"{TFL}/{f['id']}", json={"tap_filter": {"default_action": "mirror",
                                                       "rules": []}})
    assert r.status_code == 200, r.text
    assert (r.json()["tap_filter"]["default_action"], r.json()["tap_filter"]["rules"]) == (
        "mirror", [])
    # Another project neither sees nor changes it.
    neutron_error(api("b-member").get(f"{TFL}/{f['id']}"), 404, "TapFilterNotFound")
    assert f["id"] not in {x["id"] for x in api("b-member").get(TFL).json()["tap_filters"]}
    neutron_error(api("b-member").delete(f"{TFL}/{f['id']}"), 404, "TapFilterNotFound")
    assert c.delete(f"{TFL}/{f['id']}").status_code == 204
    neutron_error(c.get(f"{TFL}/{f['id']}"), 404, "TapFilterNotFound")


@pytest.mark.parametrize("rule,words", [
    ({"priority": 1, "action": "mirror", "source_ip_prefix": "10.0.0.300/24"}, "not a valid"),
    ({"priority": 1, "action": "mirror", "protocol": "icmp",
      "destination_port_range": "80"}, "need protocol tcp or udp"),
    ({"priority": 1, "action": "mirror", "destination_port_range": "80"}, "need protocol"),
    ({"priority": 1, "action": "mirror", "ethertype": "IPv6",
      "destination_ip_prefix": "10.0.0.0/8"}, "IPv4 prefix but the rule is for IPv6"),
    ({"priority": 1, "action": "mirror", "source_ip_prefix": "10.0.0.0/8",
      "destination_ip_prefix": "2001:db8::/32"}, "IPv6 prefix but the rule is for IPv4"),
    ({"priority": 1, "action": "mirror", "protocol": "icmpv6", "ethertype": "IPv4"},
     "does not exist in IPv4"),
    ({"priority": 0, "action": "mirror"}, "1..1000"),
    ({"priority": 1001, "action": "mirror"}, "1..1000"),
    ({"priority": 1, "action": "drop"}, "mirror, skip"),
    ({"priority": 1, "action": "mirror", "direction": "BOTH"}, "IN, OUT"),
    ({"priority": 1, "action": "mirror", "protocol": 256}, "0-255"),
    ({"priority": 1, "action": "mirror", "protocol": "tcp",
      "source_port_range": "90-80"}, "N <= M"),
    ({"priority": 1, "action": "mirror", "protocol": "tcp",
      "source_port_range": "70000"}, "0-65535"),
    ({"priority": 1, "action": "mirror", "protocol": "tcp", "source_port_range": "8O"},
     "\"N-M\""),
    ({"action": "mirror"}, "'priority' is required"),
    ({"priority": 1, "action": "mirror", "port": 1}, "unknown key"),
    ("tcp", "must be an object"),
])
def test_bad_rules_are_400_with_a_message_and_change_nothing(api: Api, rule: Any,
                                                              words: str) -> None:
    c = api("a-member")
    before = len(c.get(TFL).json()["tap_filters"])
    err = neutron_error(c.post(TFL, json={"tap_filter": {"rules": [rule]}}), 400,
                        "InvalidInput")
    assert words in err["message"], err
    assert len(c.get(TFL).json()["tap_filters"]) == before


def test_duplicate_priorities_and_bad_default_action(api: Api) -> None:
    c = api("a-member")
    err = neutron_error(c.post(TFL, json={"tap_filter": {"rules": [WEB, {**WEB}]}}), 400)
    assert "priority 10 is used by two rules" in err["message"]
    err = neutron_error(c.post(TFL, json={"tap_filter": {"default_action": "drop"}}), 400)
    assert "default_action" in err["message"]
    f = create(api, rules=[WEB])
    err = neutron_error(c.put(f"{TFL}/{f['id']}", json={"tap_filter": {
        "rules": [WEB, WEB]}}), 400)
    assert c.get(f"{TFL}/{f['id']}").json()["tap_filter"]["rules"] == f["rules"]


def test_tap_flow_filter_same_project_put_and_delete_in_use(api: Api) -> None:
    ts = api.tap_service()
    f = create(api, rules=[WEB])
    other = create(api, who="b-member")
    c = api("a-member")
    # Another project's filter, or none at all: 404, and no flow is created.
    for fid in (other["id"], str(uuid.uuid4())):
        body = {"tap_service_id": ts["id"], "source_port": api.port()["id"],
                "direction": "OUT", "tap_filter_id": fid}
        neutron_error(c.post(TF, json={"tap_flow": body}), 404, "TapFilterNotFound")
    flow = api.tap_flow(ts, tap_filter_id=f["id"])
    assert flow["tap_filter_id"] == f["id"]
    neutron_error(c.delete(f"{TFL}/{f['id']}"), 409, "TapFilterInUse")
    # PUT may change it (not to another project's), or remove it.
    err = neutron_error(c.put(f"{TF}/{flow['id']}", json={"tap_flow": {
        "tap_filter_id": other["id"]}}), 404, "TapFilterNotFound")
    assert other["id"] in err["message"]
    assert c.get(f"{TF}/{flow['id']}").json()["tap_flow"]["tap_filter_id"] == f["id"]
    r = c.put(f"{TF}/{flow['id']}", json={"tap_flow": {"tap_filter_id": None}})
    assert r.status_code == 200 and r.json()["tap_flow"]["tap_filter_id"] is None
    assert c.delete(f"{TFL}/{f['id']}").status_code == 204


def test_the_filter_is_in_the_source_hosts_desired_state_and_follows_puts(api: Api) -> None:
    h = f"flt-{uuid.uuid4().hex[:8]}"
    svc = api("service")
    assert svc.put(f"{AGENTS}/{h}", json={"agent": {"tunnel_ip": "172.31.9.9"}}
                   ).status_code == 200
    src = api.port()
    assert svc.put(f"{AGENTS}/{h}/ports", json={"ports": [{"port_id": src["id"]}]}
                   ).status_code == 200
    f = create(api, rules=[WEB])
    flow = api.tap_flow(api.tap_service(), source_port=src["id"], tap_filter_id=f["id"])

    def published() -> tuple[int, Any]:
        st = svc.get(f"{AGENTS}/{h}/desired-state").json()["desired_state"]
        (tf,) = [x for x in st["tap_flows"] if x["id"] == flow["id"]]
        return st["revision"], tf.get("tap_filter")

    rev, tf = published()
    assert tf["id"] == f["id"] and tf["default_action"] == "skip"
    assert [(r["priority"], r["protocol"], r["destination_port_range"]) for r in tf["rules"]
            ] == [(10, "tcp", "80")]
    r = api("a-member").put(f"{TFL}/{f['id']}", json={"tap_filter": {
        "rules": [{"priority": 3, "action": "skip", "protocol": "udp"}],
        "default_action": "mirror"}})
    assert r.status_code == 200, r.text
    rev2, tf = published()
    assert rev2 > rev and tf["default_action"] == "mirror"
    assert [(x["priority"], x["action"]) for x in tf["rules"]] == [(3, "skip")]
    r = api("a-member").put(f"{TF}/{flow['id']}", json={"tap_flow": {"tap_filter_id": None}})
    assert r.status_code == 200
    rev3, tf = published()
    assert rev3 > rev2 and tf is None
