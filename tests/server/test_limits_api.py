"""snaplen / max_pps / max_kbps over real HTTP: on tap flows, tap services and tap mirrors,
POST and PUT, their 400s (Neutron format, a message saying what is wrong, nothing changed),
and the desired state of the hosts concerned (keys only when set; a PUT republishes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Api, neutron_error

TS, TF, TM = "/v2.0/taas/tap_services", "/v2.0/taas/tap_flows", "/v2.0/taas/tap_mirrors"
AGENTS = "/v2.0/taas-agents"


def test_limits_on_create_show_list_and_put(api: Api) -> None:
    c = api("a-member")
    svc = api.tap_service(max_pps=5000)
    assert (svc["max_pps"], svc["max_kbps"]) == (5000, None)
    flow = api.tap_flow(svc, snaplen=128, max_pps=1000, max_kbps=None)
    assert (flow["snaplen"], flow["max_pps"], flow["max_kbps"]) == (128, 1000, None)
    assert c.get(f"{TF}/{flow['id']}").json()["tap_flow"] == flow
    assert flow in c.get(TF).json()["tap_flows"]
    plain = api.tap_flow(svc)
    assert (plain["snaplen"], plain["max_pps"], plain["max_kbps"]) == (None, None, None)
    mirror = api.tap_mirror(snaplen=64, max_kbps=2**32 - 1)
    assert (mirror["snaplen"], mirror["max_pps"], mirror["max_kbps"]) == (64, None, 2**32 - 1)
    # PUT changes them (and null removes them).
    r = c.put(f"{TF}/{flow['id']}", json={"tap_flow": {"snaplen": None, "max_kbps": 800}})
    assert r.status_code == 200, r.text
    got = r.json()["tap_flow"]
    assert (got["snaplen"], got["max_pps"], got["max_kbps"]) == (None, 1000, 800)
    r = c.put(f"{TS}/{svc['id']}", json={"tap_service": {"max_pps": None, "max_kbps": 100}})
    assert (r.json()["tap_service"]["max_pps"], r.json()["tap_service"]["max_kbps"]) == (
        None, 100)
    r = c.put(f"{TM}/{mirror['id']}", json={"tap_mirror": {"snaplen": 65535}})
    assert r.json()["tap_mirror"]["snaplen"] == 65535
    # Another project cannot change them.
    neutron_error(api("b-member").put(f"{TF}/{flow['id']}",
                                      json={"tap_flow": {"max_pps": 1}}), 404)
    assert c.get(f"{TF}/{flow['id']}").json()["tap_flow"]["max_pps"] == 1000
    assert c.delete(f"{TM}/{mirror['id']}").status_code == 204
    assert c.delete(f"{TS}/{svc['id']}").status_code == 204


@pytest.fixture(scope="module")
def shared(api: Api) -> Iterator[dict[str, Any]]:
    """One tap service, tap flow and tap mirror for the bad-input cases (the session's server
    has a small taas_id range: no service per case)."""
    svc = api.tap_service()
    rows = {"svc": svc, "flow": api.tap_flow(svc, snaplen=200, max_pps=10),
            "mirror": api.tap_mirror()}
    yield rows
    c = api("a-member")
    c.delete(f"{TM}/{rows['mirror']['id']}")
    c.delete(f"{TS}/{svc['id']}")


@pytest.mark.parametrize("attrs,words", [
    ({"snaplen": 63}, "'snaplen' must be 64-65535 bytes"),
    ({"snaplen": 65536}, "'snaplen' must be 64-65535 bytes"),
    ({"snaplen": 0}, "got 0"),
    ({"snaplen": "128"}, "'snaplen' must be an integer"),
    ({"snaplen": 128.5}, "'snaplen' must be an integer"),
    ({"snaplen": True}, "'snaplen' must be an integer"),
    ({"max_pps": 0}, "'max_pps' must be a positive integer"),
    ({"max_pps": -5}, "got -5"),
    ({"max_pps": 1.5}, "'max_pps' must be a positive integer"),
    ({"max_pps": False}, "'max_pps' must be a positive integer"),
    ({"max_kbps": 2**32}, "up to 4294967295"),
    ({"max_kbps": "1000"}, "'max_kbps' must be a positive integer"),
    ({"max_kbps": [1]}, "'max_kbps' must be a positive integer"),
])
def test_bad_limits_are_400_and_change_nothing(api: Api, shared: dict[str, Any],
                                              attrs: dict[str, Any], words: str) -> None:
    c = api("a-member")
    svc, flow, mirror = shared["svc"], shared["flow"], shared["mirror"]
    port = api.port()
    before = len(c.get(TF).json()["tap_flows"])
    body = {"tap_service_id": svc["id"], "source_port": port["id"], "direction": "OUT",
            **attrs}
    err = neutron_error(c.post(TF, json={"tap_flow": body}), 400, "InvalidInput")
    assert words in err["message"], err
    assert len(c.get(TF).json()["tap_flows"]) == before
    err = neutron_error(c.put(f"{TF}/{flow['id']}", json={"tap_flow": attrs}), 400,
                        "InvalidInput")
    assert words in err["message"]
    got = c.get(f"{TF}/{flow['id']}").json()["tap_flow"]
    assert (got["snaplen"], got["max_pps"], got["max_kbps"]) == (200, 10, None)
    if "snaplen" in attrs:  # a tap service has no snaplen
        err = neutron_error(c.post(TS, json={"tap_service": {"port_id": api.port()["id"],
                                                             **attrs}}), 400)
        assert "snaplen" in err["message"]
        return
    err = neutron_error(c.post(TS, json={"tap_service": {"port_id": api.port()["id"],
                                                         **attrs}}), 400)
    assert words in err["message"]
    err = neutron_error(c.put(f"{TS}/{svc['id']}", json={"tap_service": attrs}), 400)
    assert words in err["message"]
    err = neutron_error(c.put(f"{TM}/{mirror['id']}", json={"tap_mirror": attrs}), 400)
    assert words in err["message"]


def test_limits_in_the_desired_state_and_republished_on_put(api: Api) -> None:
    h, d = f"lim-{uuid.uuid4().hex[:8]}", f"limd-{uuid.uuid4().hex[:8]}"
    agent = api("service")
    for host, ip in ((h, "172.31.8.1"), (d, "172.31.8.2")):
        assert agent.put(f"{AGENTS}/{host}", json={"agent": {"tunnel_ip": ip}}
                         ).status_code == 200
    src, mon, mport = api.port(), api.port(), api.port()
    assert agent.put(f"{AGENTS}/{h}/ports", json={"ports": [
        {"port_id": src["id"]}, {"port_id": mport["id"]}]}).status_code == 200
    assert agent.put(f"{AGENTS}/{d}/ports", json={"ports": [{"port_id": mon["id"]}]}
                     ).status_code == 200
    svc = api.tap_service(port_id=mon["id"], max_kbps=9000)
    flow = api.tap_flow(svc, source_port=src["id"], snaplen=128, max_pps=1000)
    mirror = api.tap_mirror(port_id=mport["id"], max_pps=50)

    def state(host: str) -> dict[str, Any]:
        return agent.get(f"{AGENTS}/{host}/desired-state").json()["desired_state"]

    st = state(h)
    (tf,) = [x for x in st["tap_flows"] if x["id"] == flow["id"]]
    assert (tf["snaplen"], tf["max_pps"]) == (128, 1000) and "max_kbps" not in tf  # null: no key
    (tm,) = [x for x in st["tap_mirrors"] if x["id"] == mirror["id"]]
    assert tm["max_pps"] == 50 and "snaplen" not in tm and "max_kbps" not in tm
    (ds,) = [x for x in state(d)["tap_services"] if x["id"] == svc["id"]]
    assert ds["max_kbps"] == 9000 and "max_pps" not in ds
    # A PUT of a limit gives the hosts concerned a new revision with the new value.
    rev_h, rev_d = st["revision"], state(d)["revision"]
    c = api("a-member")
    assert c.put(f"{TF}/{flow['id']}", json={"tap_flow": {"max_pps": None, "snaplen": 96}}
                 ).status_code == 200
    st = state(h)
    (tf,) = [x for x in st["tap_flows"] if x["id"] == flow["id"]]
    assert st["revision"] > rev_h and tf["snaplen"] == 96 and "max_pps" not in tf
    assert c.put(f"{TS}/{svc['id']}", json={"tap_service": {"max_kbps": 100}}
                 ).status_code == 200
    sd = state(d)
    assert sd["revision"] > rev_d
    assert [x["max_kbps"] for x in sd["tap_services"] if x["id"] == svc["id"]] == [100]
    rev_h = state(h)["revision"]
    assert c.put(f"{TM}/{mirror['id']}", json={"tap_mirror": {"snaplen": 200}}
                 ).status_code == 200
    st = state(h)
    assert st["revision"] > rev_h
    assert [x["snaplen"] for x in st["tap_mirrors"] if x["id"] == mirror["id"]] == [200]
    # A PUT of the name only changes no host's revision.
    rev_h = st["revision"]
    assert c.put(f"{TM}/{mirror['id']}", json={"tap_mirror": {"name": "x"}}).status_code == 200
    assert state(h)["revision"] == rev_h
    assert c.delete(f"{TM}/{mirror['id']}").status_code == 204
    assert c.delete(f"{TS}/{svc['id']}").status_code == 204
