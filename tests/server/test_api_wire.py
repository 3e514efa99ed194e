"""Wire details Neutron clients see (issue 7): request ids, HEAD, 405 with Allow, tunnel ids
sent as strings."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from taas.testing.server import run_server
from taas.testing.wait import wait_until

from .conftest import Api, fresh_tunnel_id, neutron_error

TS, TM = "/v2.0/taas/tap_services", "/v2.0/taas/tap_mirrors"
REQ_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_every_answer_carries_a_fresh_request_id(api: Api) -> None:
    c = api("a-member")
    answers = [
        c.get(TS), c.get(f"{TS}/{uuid.uuid4()}"), c.post(TS, json={"tap_service": {}}),
        c.patch(TS), c.head(TS), httpx.get(api.server.url + "/"),
        httpx.get(api.server.url + TS), c.get("/v2.0/nothing-here"),
    ]  # the early 413 too: test_api_hardening
    assert [r.status_code for r in answers] == [200, 404, 400, 405, 200, 200, 401, 404]
    ids = [r.headers.get("x-openstack-request-id", "") for r in answers]
    assert all(REQ_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_the_request_id_is_in_the_server_log_line_of_its_request() -> None:
    with run_server(log_level="info") as srv, srv.client("admin") as c:
        r = c.get("/v2.0/networks", params={"name": "x"})
        rid = r.headers["x-openstack-request-id"]
        line = wait_until(lambda: next((ln for ln in srv.log().splitlines() if rid in ln), None),
                          timeout=10, what="the access log line")
        assert "GET /v2.0/networks 200" in line


def test_wrong_method_is_405_with_every_allowed_method(api: Api) -> None:
    c = api("a-member")
    ts = api.tap_service()
    for method, path, allow in (
        ("PATCH", TS, "GET, HEAD, POST"),
        ("DELETE", TS, "GET, HEAD, POST"),
        ("POST", f"{TS}/{ts['id']}", "DELETE, GET, HEAD, PUT"),
        ("PUT", "/v2.0/extensions", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
    ):
        r = c.request(method, path)
        neutron_error(r, 405, "HTTPMethodNotAllowed")
        assert r.headers["allow"] == allow, (method, path)
    assert c.get(f"{TS}/{ts['id']}").status_code == 200  # nothing changed


def test_head_answers_like_get_without_a_body(api: Api) -> None:
    c = api("a-member")
    ts = api.tap_service()
    for path in (TS, f"{TS}/{ts['id']}", "/v2.0/extensions", "/v2.0/ports"):
        get, head = c.get(path), c.head(path)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
        assert head.headers["content-length"] == get.headers["content-length"]
    missing = c.head(f"{TS}/{uuid.uuid4()}")
    assert (missing.status_code, missing.content) == (404, b"")
    assert httpx.head(api.server.url + "/").status_code == 200
    assert httpx.head(api.server.url + TS).status_code == 401


@pytest.mark.parametrize("sent,stored", [
    ("{a}", "a"), (" {a} ", "a"), ("+{a}", "a"), ("{a}.0", None), ("{a}x", None),
])
def test_tunnel_ids_sent_as_strings(api: Api, sent: str, stored: str | None) -> None:
    """As the original's integer validator: integer strings are integers, nothing else."""
    a = fresh_tunnel_id()
    body = {"port_id": api.port()["id"], "remote_ip": "192.0.2.10", "mirror_type": "gre",
            "directions": {"IN": sent.format(a=a)}}
    r = api("a-member").post(TM, json={"tap_mirror": body})
    if stored is None:
        assert "directions.IN" in neutron_error(r, 400, "InvalidInput")["message"]
        return
    assert r.status_code == 201, r.text
    tm = r.json()["tap_mirror"]
    assert tm["directions"] == {"IN": a}
    assert api("a-member").get(f"{TM}/{tm['id']}").json()["tap_mirror"]["directions"] == {"IN": a}


def test_integral_json_numbers_are_tunnel_ids(api: Api) -> None:
    a, b = fresh_tunnel_id(), fresh_tunnel_id()
    body = {"port_id": api.port()["id"], "remote_ip": "192.0.2.10", "mirror_type": "erspanv1",
            "directions": {"IN": float(a), "OUT": b}}
    r = api("a-member").post(TM, json={"tap_mirror": body})
    assert r.status_code == 201, r.text
    assert r.json()["tap_mirror"]["directions"] == {"IN": a, "OUT": b}
