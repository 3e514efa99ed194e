"""What an attacker or a failure sends to the tenant API (issue 11's security review): list
markers, oversized and invalid bodies, a database outage, errors on kept-alive connections,
tap mirror destinations and links built from the Host header."""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import uuid
from typing import Any

import httpx
import pytest

from taas.server.db import models
from taas.server.services import validation
from taas.testing.postgres import postgres_cluster
from taas.testing.server import run_server
from taas.testing.wait import wait_until

from .conftest import Api, fresh_tunnel_id, neutron_error

TS, TF, TM = "/v2.0/taas/tap_services", "/v2.0/taas/tap_flows", "/v2.0/taas/tap_mirrors"
CAP = 1024 * 1024


def local_port(r: httpx.Response) -> int:
    """The client-side port of the connection that carried `r` (same port = same connection)."""
    return r.extensions["network_stream"].get_extra_info("client_addr")[1]


# ---- list markers ---------------------------------------------------------------------------

def test_marker_of_another_project_is_as_unknown_as_a_made_up_one(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    mine = [api.tap_service(name=f"{tag}-a{i}") for i in range(2)]
    theirs = api.tap_service("b-member", project="project-b", name=f"{tag}-b")
    c = api("a-member")
    for marker in (theirs["id"], str(uuid.uuid4())):
        for params in ({"limit": "1", "marker": marker},
                       {"limit": "1", "marker": marker, "sort_key": "name"},
                       {"marker": marker, "page_reverse": "true"}):
            err = neutron_error(c.get(TS, params=params), 404, "MarkerNotFound")
            assert err["message"] == f"Marker {marker} could not be found"
    # Markers the caller may see still page (own rows; the admin sees every project).
    r = c.get(TS, params={"limit": "1", "marker": mine[0]["id"], "sort_key": "name",
                          "name": [f"{tag}-a0", f"{tag}-a1"]})
    assert [s["id"] for s in r.json()["tap_services"]] == [mine[1]["id"]]
    r = api("admin").get(TS, params={"limit": "5", "marker": theirs["id"], "sort_key": "name",
                                     "name": [f"{tag}-a0", f"{tag}-a1", f"{tag}-b"]})
    assert r.status_code == 200 and r.json()["tap_services"] == []


# ---- bodies over the cap ----------------------------------------------------------------------

def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _request_head(api: Api, extra: str) -> bytes:
    return (f"POST {TS} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {api.server.tokens['admin']}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def test_declared_length_over_the_cap_is_413_before_any_body_byte(api: Api) -> None:
    with _connect(api.server.url) as sock:
        # Only the head is sent: the answer must not wait for 200 MB that never come.
        sock.sendall(_request_head(api, f"Content-Length: {200 * CAP}\r\n"))
        status, headers, body = _read_response(sock)
    assert status == 413 and headers.get("connection") == "close"
    assert headers["x-openstack-request-id"].startswith("req-")
    err = json.loads(body)["NeutronError"]
    assert err["type"] == "HTTPRequestEntityTooLarge"
    assert err["message"] == "Request body too large"


def test_chunked_body_over_the_cap_is_refused_while_it_streams(api: Api) -> None:
    chunk = b"x" * 16384
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent, bound = 0, 64 * CAP
    with _connect(api.server.url) as sock:
        sock.sendall(_request_head(api, "Transfer-Encoding: chunked\r\n"))
        pending = b""
        try:
            while sent < bound:
                readable, writable, _ = select.select([sock], [sock], [], 10)
                if readable:
                    break  # the server answered before the body's end
                if writable:
                    if not pending:
                        pending, sent = frame, sent + len(chunk)
                    pending = pending[sock.send(pending):]
            else:
                sock.sendall(pending + b"0\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closed after answering; the answer is still readable
        status, headers, body = _read_response(sock)
    assert status == 413, body
    assert headers.get("connection") == "close"
    assert json.loads(body)["NeutronError"]["type"] == "HTTPRequestEntityTooLarge"
    assert sent < bound  # refused mid-stream, not after reading everything


# ---- errors keep the connection usable ------------------------------------------------------

def test_next_request_on_the_connection_works_after_a_500(api: Api) -> None:
    port = api.port()
    with api.server.client("a-member") as c:
        first = c.get(TS)
        r = c.post(TS, json={"tap_service": {"port_id": port["id"], "name": "fail-precommit"}})
        err = neutron_error(r, 500, "HTTPInternalServerError")
        assert err == {"type": "HTTPInternalServerError", "message": "Internal server error",
                       "detail": ""}  # the exception's text stays in the server log
        after = c.get(TS)
        assert after.status_code == 200
        assert r.headers.get("connection") == "close" or \
            local_port(first) == local_port(r) == local_port(after)
    assert "injected precommit bug" in api.server.log()


def test_a_client_gone_mid_body_costs_one_log_line_not_a_traceback() -> None:
    with run_server(log_level="info") as srv:
        with _connect(srv.url) as sock:
            sock.sendall((f"POST {TS} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: "
                          f"{srv.tokens['admin']}\r\nContent-Type: application/json\r\n"
                          "Content-Length: 100\r\n\r\n{\"tap_").encode())
        # Sentinel: the access line of that request (written once the server is done with it).
        wait_until(lambda: f"POST {TS} " in srv.log(), timeout=20, what="the access line")
        log = srv.log()
        assert "Traceback" not in log and "unhandled error" not in log


# ---- database unavailable -------------------------------------------------------------------

def _assert_unavailable(r: httpx.Response) -> None:
    err = neutron_error(r, 503, "HTTPServiceUnavailable")
    assert err["message"] == "The database is unavailable; try again later"
    assert err["detail"] == ""


def test_postgres_down_is_503_without_details_then_recovers_on_the_same_connection() -> None:
    with postgres_cluster("taas_outage") as cluster, run_server(db_url=cluster.url) as srv, \
            srv.client("admin") as c:
        before = c.get("/v2.0/networks")
        assert before.status_code == 200
        cluster.stop()
        down = [c.get("/v2.0/networks"),
                c.post("/v2.0/networks", json={"network": {"project_id": "p"}}),
                # The agents' calls too (served outside FastAPI's routing: api/fastpath.py).
                c.put("/v2.0/taas-agents/h-out", json={"agent": {"tunnel_ip": "10.0.0.1"}}),
                c.get("/v2.0/taas-agents/h-out/desired-state")]
        for r in down:
            _assert_unavailable(r)
            assert str(cluster.port) not in r.text and "psycopg" not in r.text
        assert "database unavailable on GET /v2.0/networks" in srv.log()
        cluster.start()
        after = c.post("/v2.0/networks", json={"network": {"project_id": "p"}})
        assert after.status_code == 201, srv.log()
        assert local_port(before) == local_port(down[1]) == local_port(after)


def test_sqlite_locked_past_the_busy_timeout_is_503_then_recovers() -> None:
    with run_server(sqlite_busy_timeout=0.2) as srv, srv.client("admin") as c:
        before = c.get("/v2.0/networks")
        path = srv.db_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer
        try:
            other.execute("BEGIN EXCLUSIVE")
            down = c.post("/v2.0/networks", json={"network": {"project_id": "p"}})
        finally:
            other.execute("ROLLBACK")
            other.close()
        _assert_unavailable(down)
        after = c.post("/v2.0/networks", json={"network": {"project_id": "p"}})
        assert after.status_code == 201, after.text
        assert local_port(before) == local_port(down) == local_port(after)


# ---- strings: Unicode and lengths -------------------------------------------------------------

def _post_raw(c: httpx.Client, path: str, doc: str) -> httpx.Response:
    return c.post(path, content=doc.encode(), headers={"Content-Type": "application/json"})


def test_lone_surrogates_anywhere_are_400(api: Api) -> None:
    port = api.port()
    ts = api.tap_service()
    admin = api("admin")
    cases = [
        (TS, {"tap_service": {"port_id": port["id"], "name": "SURR"}}),
        (TS, {"tap_service": {"port_id": port["id"], "description": "aSURRb"}}),
        (TF, {"tap_flow": {"tap_service_id": ts["id"], "source_port": port["id"],
                           "direction": "IN", "vlan_filter": "SURR"}}),
        (TM, {"tap_mirror": {"port_id": port["id"], "directions": {"IN": 1},
                             "remote_ip": "SURR", "mirror_type": "gre"}}),
        (TM, {"tap_mirror": {"port_id": port["id"], "directions": {"SURR": 1},
                             "remote_ip": "192.0.2.5", "mirror_type": "gre"}}),
        ("/v2.0/networks", {"network": {"name": "SURR"}}),
        ("/v2.0/ports", {"port": {"network_id": port["network_id"], "device_id": "SURR"}}),
        ("/v2.0/ports", {"port": {"network_id": port["network_id"], "project_id": "SURR"}}),
        ("/v2.0/taas-agents/surr-h", {"agent": {"tunnel_ip": "SURR"}}),
    ]
    for path, doc in cases:
        text = json.dumps(doc).replace("SURR", "\\ud800")
        method = admin.put if "taas-agents" in path else admin.post
        r = method(path, content=text.encode(), headers={"Content-Type": "application/json"})
        err = neutron_error(r, 400, "InvalidInput")
        assert "not valid Unicode" in err["message"], (path, err)
    # Updates too; and nothing changed.
    doc = json.dumps({"tap_service": {"port_id": port["id"], "name": "SURR"}})
    r = _post_raw(admin, TS, doc.replace("SURR", "\\udfff"))
    neutron_error(r, 400, "InvalidInput")
    r = admin.put(f"{TS}/{ts['id']}", content=b'{"tap_service": {"name": "\\ud83d"}}',
                  headers={"Content-Type": "application/json"})
    neutron_error(r, 400, "InvalidInput")
    assert admin.get(f"{TS}/{ts['id']}").json()["tap_service"]["name"] == ts["name"]


def test_every_string_limit_fits_its_column() -> None:
    """A value the validators accept is stored alike by SQLite (no limits) and PostgreSQL."""
    tables: list[tuple[dict[str, validation.Attr], type[models.Base]]] = [
        (validation.TAP_SERVICE, models.TapService), (validation.TAP_FLOW, models.TapFlow),
        (validation.TAP_MIRROR, models.TapMirror), (validation.NETWORK, models.Network),
        (validation.PORT, models.Port)]
    renamed = {"tenant_id": "project_id", "binding:host_id": "host"}
    checked = 0
    for spec, model in tables:
        columns = model.__table__.columns
        for key, attr in spec.items():
            column = columns.get(renamed.get(key, key))
            limit = getattr(attr.validate, "max_len", None)
            if column is None or not hasattr(column.type, "length") or column.type.length is None:
                continue
            assert limit is not None, f"{model.__name__}.{key} has no length check"
            assert limit <= column.type.length, (model.__name__, key, limit)
            checked += 1
    tunnel_ip = models.Agent.__table__.c.tunnel_ip
    assert validation.ip_address.max_len <= tunnel_ip.type.length  # type: ignore[attr-defined]
    assert checked >= 20


def test_overlong_strings_are_400_on_every_database(api: Api) -> None:
    port = api.port()
    ts = api.tap_service()
    c = api("a-member")
    long_filter = ",".join(["1"] * 600)  # valid syntax, 1,199 characters
    err = neutron_error(c.post(TF, json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": port["id"], "direction": "IN",
        "vlan_filter": long_filter}}), 400, "InvalidInput")
    assert "vlan_filter" in err["message"] and "1024" in err["message"]
    err = neutron_error(c.post(TM, json={"tap_mirror": {
        "port_id": port["id"], "directions": {"IN": fresh_tunnel_id()}, "mirror_type": "gre",
        "remote_ip": "2001:db8::" + "0" * 80 + "1"}}), 400, "InvalidInput")
    assert "remote_ip" in err["message"]
    r = api("service").put("/v2.0/taas-agents/long-tip",
                           json={"agent": {"tunnel_ip": "192.0.2.1" + " " * 100}})
    neutron_error(r, 400, "InvalidInput")
    err = neutron_error(c.post(TS, json={"tap_service": {"port_id": port["id"],
                                                         "name": "n" * 256}}), 400)
    assert "255" in err["message"]


# ---- tap mirror destinations ----------------------------------------------------------------

@pytest.mark.parametrize("ip,kind", [
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("224.0.0.5", "multicast"), ("239.1.1.1", "multicast"), ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("febf::1", "link-local"),
])
def test_tap_mirror_to_a_local_or_group_address_is_400(api: Api, ip: str, kind: str) -> None:
    port = api.port()
    r = api("a-member").post(TM, json={"tap_mirror": {
        "port_id": port["id"], "directions": {"IN": fresh_tunnel_id()}, "remote_ip": ip,
        "mirror_type": "gre"}})
    err = neutron_error(r, 400, "InvalidInput")
    assert f"is a {kind} address" in err["message"], err


def test_tap_mirror_to_a_hypervisor_tunnel_address_is_400(api: Api) -> None:
    tip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    host = f"hd-{uuid.uuid4().hex[:8]}"
    assert api("service").put(f"/v2.0/taas-agents/{host}",
                              json={"agent": {"tunnel_ip": tip}}).status_code == 200
    port = api.port()
    body: dict[str, Any] = {"port_id": port["id"], "directions": {"IN": fresh_tunnel_id()},
                            "remote_ip": tip, "mirror_type": "erspanv1"}
    err = neutron_error(api("a-member").post(TM, json={"tap_mirror": body}), 400, "InvalidInput")
    assert "tunnel address of a hypervisor" in err["message"]
    assert api("a-member").get(TM, params={"port_id": port["id"]}).json()["tap_mirrors"] == []
    admin = api("admin")
    (agent,) = admin.get("/v2.0/agents", params={"host": host}).json()["agents"]
    assert admin.delete(f"/v2.0/agents/{agent['id']}").status_code == 204
    assert api("a-member").post(TM, json={"tap_mirror": body}).status_code == 201


# ---- links ----------------------------------------------------------------------------------

def test_links_never_follow_the_host_header(api: Api) -> None:
    evil = {"Host": "attacker.example:666"}
    root = httpx.get(api.server.url + "/", headers=evil).json()
    assert root["versions"][0]["links"][0]["href"] == api.server.url + "/v2.0/"
    v2 = httpx.get(api.server.url + "/v2.0/", headers=evil).json()
    assert all(link["href"].startswith(api.server.url + "/v2.0/")
               for res in v2["resources"] for link in res["links"])
    tag = uuid.uuid4().hex[:8]
    for i in range(2):
        api.tap_service(name=f"{tag}-{i}")
    r = api("a-member").get(TS, params={"limit": "1", "name": [f"{tag}-0", f"{tag}-1"]},
                            headers=evil)
    (link,) = r.json()["tap_services_links"]
    assert link["href"].startswith(api.server.url + TS + "?")


def test_links_use_the_configured_public_endpoint() -> None:
    public = "https://taas.example.org:13696/network"
    with run_server(public_endpoint=public + "/") as srv, srv.client("admin") as c:
        root = httpx.get(srv.url + "/").json()
        assert root["versions"][0]["links"][0]["href"] == public + "/v2.0/"
        v2 = c.get("/v2.0").json()
        assert {link["href"] for res in v2["resources"] for link in res["links"]} >= {
            public + "/v2.0/taas/tap_services"}
        for _ in range(2):
            assert c.post("/v2.0/networks", json={"network": {"project_id": "p"}}).status_code \
                == 201
        (link,) = c.get("/v2.0/networks", params={"limit": "1"}).json()["networks_links"]
        assert link["href"].startswith(public + "/v2.0/networks?")
