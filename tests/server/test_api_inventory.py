"""The built-in port inventory: networks, ports, segmentation ids and the delete cascade."""

from __future__ import annotations

import re
import uuid

from .conftest import Api, neutron_error


def test_network_create_and_wire_format(api: Api) -> None:
    net_id = str(uuid.uuid4())
    r = api("admin").post("/v2.0/networks", json={"network": {
        "id": net_id, "name": "lab", "project_id": "project-a", "admin_state_up": True,
        "provider:network_type": "vxlan", "provider:segmentation_id": 4242}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]
    assert net["id"] == net_id and net["provider:segmentation_id"] == 4242
    assert net["provider:network_type"] == "vxlan" and net["status"] == "ACTIVE"
    assert net["shared"] is False and net["subnets"] == []
    assert net["tenant_id"] == net["project_id"] == "project-a"
    neutron_error(api("admin").post("/v2.0/networks", json={"network": {"id": net_id}}), 409)
    neutron_error(api("admin").post("/v2.0/networks", json={"network": {
        "provider:segmentation_id": 4242}}), 409, "SegmentationIdConflict")
    # Allocated ids are unique and avoid used ones.
    segs = {api.network()["provider:segmentation_id"] for _ in range(3)}
    assert len(segs) == 3 and 4242 not in segs


def test_segmentation_id_in_taas_tunnel_range_is_409(api: Api) -> None:
    for seg in (16_003_900, 16_003_950, 16_003_999):
        err = neutron_error(api("admin").post("/v2.0/networks", json={"network": {
            "provider:segmentation_id": seg}}), 409, "SegmentationIdConflict")
        assert "tap services" in err["message"]
    r = api("admin").post("/v2.0/networks", json={"network": {
        "provider:segmentation_id": 16_004_000}})
    assert r.status_code == 201


def test_port_defaults_and_explicit_values(api: Api) -> None:
    net = api.network("project-b")
    p = api.port("project-b", network_id=net["id"])
    assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", p["mac_address"])
    assert p["binding:host_id"] == "" and p["status"] == "DOWN" and p["fixed_ips"] == []
    port_id = str(uuid.uuid4())
    r = api("admin").post("/v2.0/ports", json={"port": {
        "id": port_id, "network_id": net["id"], "mac_address": "FA:16:3E:00:00:01",
        "name": "vm1", "binding:host_id": "host-1", "device_owner": "compute:nova",
        "fixed_ips": [{"ip_address": "10.0.0.5"}]}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert port["id"] == port_id and port["mac_address"] == "fa:16:3e:00:00:01"
    assert port["project_id"] == "project-b"  # the network's project by default
    assert port["binding:host_id"] == "host-1" and port["status"] == "ACTIVE"
    assert port["fixed_ips"] == [{"ip_address": "10.0.0.5"}]
    neutron_error(api("admin").post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"}}), 409, "MacAddressInUse")
    neutron_error(api("admin").post("/v2.0/ports", json={"port": {
        "id": port_id, "network_id": net["id"]}}), 409)
    neutron_error(api("admin").post("/v2.0/ports", json={"port": {
        "network_id": str(uuid.uuid4())}}), 404, "NetworkNotFound")
    neutron_error(api("admin").post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "security_groups": []}}), 400)
    # Filters by host and network.
    ports = api("admin").get("/v2.0/ports", params={"binding:host_id": "host-1",
                                                     "network_id": net["id"]}).json()["ports"]
    assert [x["id"] for x in ports] == [port_id]
    r = api("admin").put(f"/v2.0/ports/{port_id}", json={"port": {"binding:host_id": None}})
    assert r.json()["port"]["binding:host_id"] == ""
    neutron_error(api("admin").put(f"/v2.0/ports/{port_id}", json={"port": {
        "network_id": net["id"]}}), 400)
    # A network with ports cannot go.
    neutron_error(api("admin").delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")


def test_list_networks_by_owner(api: Api) -> None:
    a = api.network("project-a", name="owned-a")
    b = api.network("project-b", name="owned-b")
    mine = {n["id"] for n in api("a-reader").get("/v2.0/networks").json()["networks"]}
    assert a["id"] in mine and b["id"] not in mine
    r = api("admin").get("/v2.0/networks", params={"name": "owned-b", "fields": "id"})
    assert {"id": b["id"]} in r.json()["networks"]


def test_deleting_a_port_deletes_tap_resources_that_use_it(api: Api) -> None:
    ts = api.tap_service()
    src = api.port()
    flow = api.tap_flow(ts, source_port=src["id"])
    other_ts = api.tap_service()
    flow2 = api.tap_flow(other_ts, source_port=src["id"])
    mirror = api.tap_mirror(port_id=src["id"])
    # Deleting the source port: its flows and mirror go, the services stay.
    assert api("admin").delete(f"/v2.0/ports/{src['id']}").status_code == 204
    c = api("a-member")
    neutron_error(c.get(f"/v2.0/taas/tap_flows/{flow['id']}"), 404)
    neutron_error(c.get(f"/v2.0/taas/tap_flows/{flow2['id']}"), 404)
    neutron_error(c.get(f"/v2.0/taas/tap_mirrors/{mirror['id']}"), 404)
    assert c.get(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 200
    # Deleting a destination port: the service and its flows go.
    flow3 = api.tap_flow(ts)
    assert api("admin").delete(f"/v2.0/ports/{ts['port_id']}").status_code == 204
    neutron_error(c.get(f"/v2.0/taas/tap_services/{ts['id']}"), 404)
    neutron_error(c.get(f"/v2.0/taas/tap_flows/{flow3['id']}"), 404)
    neutron_error(api("admin").get(f"/v2.0/ports/{src['id']}"), 404, "PortNotFound")
