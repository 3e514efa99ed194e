"""A tap resource naming a port created in Neutron a moment ago, before its notification reached
taas-server: the port (and its network) are read from Neutron in the same transaction.

openstacksdk's and tempest's TaaS tests create a port and then at once a tap service on it;
on the Neutron lab that race is won or lost at random (tests/neutron/test_neutron_plugin.py runs
them). To make it certain, neutron-server is played here by a small HTTP server that answers
only GETs of single objects and whose lists stay empty, and taas-server gets no notifications
and no periodic resync within the test: the read-through is the only way it can learn the port.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from taas.testing.server import ServerProcess, run_server


class StandIn:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # "/v2.0/ports/<id>" -> {"port": {...}}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path in ("/v2.0/networks", "/v2.0/ports"):
                    status, body = 200, {path.rsplit("/", 1)[1]: []}
                elif path in stand_in.objects:
                    status, body = 200, stand_in.objects[path]
                else:
                    status, body = 404, {"NeutronError": {"type": "NotFound"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add_port(self, project: str, vni: int) -> str:
        net, port = str(uuid.uuid4()), str(uuid.uuid4())
        self.objects[f"/v2.0/networks/{net}"] = {"network": {
            "id": net, "project_id": project, "name": "n", "description": "",
            "admin_state_up": True, "provider:network_type": "vxlan",
            "provider:segmentation_id": vni}}
        self.objects[f"/v2.0/ports/{port}"] = {"port": {
            "id": port, "project_id": project, "network_id": net, "name": "p",
            "description": "", "mac_address": "fa:16:3e:12:34:56", "binding:host_id": "h1",
            "device_owner": "compute:nova", "device_id": "d", "admin_state_up": True,
            "fixed_ips": []}}
        return port

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def neutron() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(neutron: StandIn) -> Iterator[ServerProcess]:
    with run_server(port_backend="neutron", neutron_url=neutron.url,
                    neutron_resync_interval=3600) as srv:
        yield srv


def test_a_port_newer_than_the_replica_is_read_from_neutron(neutron: StandIn,
                                                            server: ServerProcess) -> None:
    port = neutron.add_port(server.project("project-a"), 500)
    with server.client("a-member") as c, server.client("admin") as admin:
        assert admin.get(f"/v2.0/ports/{port}").status_code == 404  # not in the replica
        r = c.post("/v2.0/taas/tap_services", json={"tap_service": {"port_id": port}})
        assert r.status_code == 201, r.text
        assert admin.get(f"/v2.0/ports/{port}").json()["port"]["binding:host_id"] == "h1"
        nets = admin.get("/v2.0/networks").json()["networks"]
        assert [n["provider:segmentation_id"] for n in nets] == [500]
        # Another project's port read the same way: refused as any known one would be.
        other = neutron.add_port(server.project("project-b"), 501)
        r = c.post("/v2.0/taas/tap_services", json={"tap_service": {"port_id": other}})
        assert r.status_code == 403 and \
            r.json()["NeutronError"]["type"] == "PortDoesNotBelongToTenant"
        # A port Neutron does not have either: 404, nothing added.
        r = c.post("/v2.0/taas/tap_services",
                   json={"tap_service": {"port_id": str(uuid.uuid4())}})
        assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "PortNotFound"
        assert len(admin.get("/v2.0/taas/tap_services").json()["tap_services"]) == 1


def test_sync_of_a_deleted_port_takes_its_tap_resources(neutron: StandIn,
                                                         server: ServerProcess) -> None:
    """POST /v2.0/ports/<id>/sync (what Neutron's TaaS plugin sends when Neutron deletes a
    port): taas-server re-reads the port; gone from Neutron, its tap service goes at once."""
    port = neutron.add_port(server.project("project-a"), 502)
    with server.client("a-member") as c, server.client("b-member") as b:
        ts = c.post("/v2.0/taas/tap_services", json={"tap_service": {"port_id": port}}).json()
        r = b.post(f"/v2.0/ports/{port}/sync")  # any caller: nothing is taken from it
        assert r.status_code == 204
        assert c.get(f"/v2.0/taas/tap_services/{ts['tap_service']['id']}").status_code == 200
        del neutron.objects[f"/v2.0/ports/{port}"]
        assert c.post(f"/v2.0/ports/{port}/sync").status_code == 204
        r = c.get(f"/v2.0/taas/tap_services/{ts['tap_service']['id']}")
        assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "TapServiceNotFound"
        assert c.post("/v2.0/ports/not-a-uuid/sync").status_code == 400
    assert httpx.post(f"{server.url}/v2.0/ports/{port}/sync", timeout=30).status_code == 401


def test_neutron_unreachable_is_a_503_not_a_404(neutron: StandIn, server: ServerProcess) -> None:
    """Last: the stand-in is stopped. Whether the port exists is unknown, so not 404."""
    neutron.close()
    with server.client("a-member") as c:
        r = c.post("/v2.0/taas/tap_services",
                   json={"tap_service": {"port_id": str(uuid.uuid4())}})
    assert r.status_code == 503, r.text
    err = r.json()["NeutronError"]
    assert err["type"] == "HTTPServiceUnavailable" and "127.0.0.1" not in err["message"]
