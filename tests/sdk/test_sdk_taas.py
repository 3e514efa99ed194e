"""openstacksdk (from PyPI, unchanged) against a real taas-server, with no Keystone."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from openstack import exceptions

PROJECT = "project-a"
_seg = itertools.count(1500)


@pytest.fixture(scope="module")
def inventory(admin: Any) -> Iterator[dict[str, Any]]:
    """A network of project-a and its ports, made through openstacksdk by the admin."""
    net = admin.network.create_network(name="sdk-net", project_id=PROJECT,
                                       provider_segmentation_id=next(_seg))
    ports = {name: admin.network.create_port(network_id=net.id, name=name, project_id=PROJECT)
             for name in ("sdk-mon", "sdk-vm1", "sdk-vm2", "sdk-vm3", "sdk-mon2")}
    yield {"net": net, "ports": ports}


def test_networks_and_ports(admin: Any, member: Any, other: Any,
                            inventory: dict[str, Any]) -> None:
    net = inventory["net"]
    assert net.project_id == PROJECT and net.name == "sdk-net"
    seg = net.provider_segmentation_id
    assert seg >= 1500 and admin.network.get_network(net.id).provider_segmentation_id == seg
    assert admin.network.find_network("sdk-net").id == net.id
    ports = list(member.network.ports(network_id=net.id))
    assert {p.name for p in ports} == set(inventory["ports"])
    assert all(p.network_id == net.id and p.mac_address for p in ports)
    assert [p.id for p in member.network.ports(name="sdk-vm1")] == [
        inventory["ports"]["sdk-vm1"].id]
    assert list(other.network.ports(network_id=net.id)) == []

    extra = admin.network.create_port(network_id=net.id, name="sdk-extra", project_id=PROJECT,
                                      mac_address="fa:16:3e:aa:bb:cc")
    assert extra.mac_address == "fa:16:3e:aa:bb:cc"
    admin.network.delete_port(extra)
    with pytest.raises(exceptions.NotFoundException):
        admin.network.get_port(extra.id)


@pytest.fixture
def notused_server(server: Any) -> Iterator[Any]:
    """A second taas-server on the same database whose tokens file knows "notused".

    With auth_type none, keystoneauth sends the fixed token `X-Auth-Token: notused`; a
    deployment without Keystone maps that token to an identity like any other token.
    """
    from taas.testing.server import ServerProcess

    srv = ServerProcess(server.db_url, None, {})
    try:
        tokens_file = srv.workdir / "tokens.json"
        data = json.loads(tokens_file.read_text())
        data["tokens"]["notused"] = {"project_id": PROJECT, "roles": ["member"]}
        tokens_file.write_text(json.dumps(data))
        srv.start()
        yield srv
    finally:
        srv.cleanup()


def test_auth_none_discovers_the_endpoint(notused_server: Any,
                                          inventory: dict[str, Any]) -> None:
    """auth_type none: openstacksdk GETs / and follows the v2.0 link, no token of ours."""
    conn = openstack.connect(auth_type="none", auth={"endpoint": notused_server.url + "/"})
    ports = inventory["ports"]
    assert set(ports) <= {p.name for p in conn.network.ports()}
    ts = conn.network.create_tap_service(port_id=ports["sdk-mon"].id, name="sdk-none-ts")
    try:
        assert ts.project_id == PROJECT
        flow = conn.network.create_tap_flow(tap_service_id=ts.id, direction="IN",
                                            source_port=ports["sdk-vm1"].id)
        assert [f.id for f in conn.network.tap_flows()] == [flow.id]
        assert conn.network.find_tap_service("sdk-none-ts").id == ts.id
    finally:
        conn.network.delete_tap_service(ts)
    assert conn.network.find_tap_service(ts.id) is None


def test_tap_service_crud(member: Any, other: Any, inventory: dict[str, Any]) -> None:
    mon = inventory["ports"]["sdk-mon"]
    ts = member.network.create_tap_service(port_id=mon.id, name="sdk-ids", description="IDS")
    assert ts.id and ts.port_id == mon.id and ts.project_id == PROJECT
    assert ts.status == "DOWN" and ts.description == "IDS"

    assert [s.id for s in member.network.tap_services()] == [ts.id]
    assert [s.id for s in member.network.tap_services(name="sdk-ids")] == [ts.id]
    assert list(member.network.tap_services(name="other")) == []
    assert list(other.network.tap_services()) == []
    assert member.network.find_tap_service("sdk-ids").id == ts.id
    assert member.network.find_tap_service(ts.id).name == "sdk-ids"
    assert member.network.get_tap_service(ts.id).port_id == mon.id

    upd = member.network.update_tap_service(ts, name="sdk-ids2", description="renamed")
    assert (upd.name, upd.description) == ("sdk-ids2", "renamed")
    assert member.network.get_tap_service(ts.id).name == "sdk-ids2"

    member.network.delete_tap_service(ts)
    assert member.network.find_tap_service(ts.id) is None
    with pytest.raises(exceptions.NotFoundException):
        member.network.get_tap_service(ts.id)


def test_tap_flow_crud(member: Any, inventory: dict[str, Any]) -> None:
    ports = inventory["ports"]
    ts = member.network.create_tap_service(port_id=ports["sdk-mon"].id, name="sdk-flows-ts")
    f1 = member.network.create_tap_flow(tap_service_id=ts.id, source_port=ports["sdk-vm1"].id,
                                        direction="BOTH", vlan_filter="10-20", name="sdk-f1")
    assert (f1.tap_service_id, f1.source_port, f1.direction) == (ts.id, ports["sdk-vm1"].id,
                                                                 "BOTH")
    assert f1.status == "DOWN" and f1.project_id == PROJECT
    f2 = member.network.create_tap_flow(tap_service_id=ts.id, source_port=ports["sdk-vm2"].id,
                                        direction="OUT", name="sdk-f2")
    assert {f.id for f in member.network.tap_flows()} == {f1.id, f2.id}
    # Pages of one: openstacksdk follows the server's tap_flows_links to the end.
    paged = [f.id for f in member.network.tap_flows(limit=1)]
    assert sorted(paged) == sorted([f1.id, f2.id]), paged
    assert [f.id for f in member.network.tap_flows(name="sdk-f2")] == [f2.id]
    assert member.network.find_tap_flow("sdk-f1").id == f1.id
    assert member.network.get_tap_flow(f1.id).vlan_filter == "10-20"
    upd = member.network.update_tap_flow(f1, name="sdk-f1b")
    assert upd.name == "sdk-f1b" and upd.direction == "BOTH"

    member.network.delete_tap_flow(f1)
    assert [f.id for f in member.network.tap_flows()] == [f2.id]
    member.network.delete_tap_service(ts)  # takes f2 with it
    assert list(member.network.tap_flows()) == []


def test_tap_mirror_crud_and_conflict(member: Any, inventory: dict[str, Any]) -> None:
    ports = inventory["ports"]
    tm = member.network.create_tap_mirror(port_id=ports["sdk-vm3"].id, name="sdk-tm",
                                          directions={"IN": 202, "OUT": 203},
                                          remote_ip="192.0.2.20", mirror_type="erspanv1")
    assert tm.port_id == ports["sdk-vm3"].id and tm.mirror_type == "erspanv1"
    assert {k: int(v) for k, v in tm.directions.items()} == {"IN": 202, "OUT": 203}
    assert [m.id for m in member.network.tap_mirrors()] == [tm.id]
    assert member.network.find_tap_mirror("sdk-tm").id == tm.id
    assert member.network.update_tap_mirror(tm, description="to the collector").description \
        == "to the collector"

    with pytest.raises(exceptions.ConflictException) as err:
        member.network.create_tap_mirror(port_id=ports["sdk-vm2"].id, directions={"IN": 202},
                                         remote_ip="192.0.2.21", mirror_type="gre")
    assert err.value.status_code == 409
    assert "202" in str(err.value)  # the server's message names the tunnel id

    member.network.delete_tap_mirror(tm)
    assert list(member.network.tap_mirrors()) == []


def test_errors_map_to_sdk_exceptions(member: Any, other: Any,
                                      inventory: dict[str, Any]) -> None:
    missing = "6f1d8b52-0000-4000-8000-00000000abcd"
    with pytest.raises(exceptions.NotFoundException) as err:
        member.network.get_tap_flow(missing)
    assert isinstance(err.value, exceptions.ResourceNotFound)
    assert missing in str(err.value)
    with pytest.raises(exceptions.ResourceNotFound):
        member.network.find_tap_service("sdk-nope", ignore_missing=False)
    with pytest.raises(exceptions.NotFoundException):
        member.network.delete_tap_mirror(missing, ignore_missing=False)
    member.network.delete_tap_mirror(missing)  # ignore_missing=True: no error

    # Another project's tap service is not found, and its port may not be used.
    ts = member.network.create_tap_service(port_id=inventory["ports"]["sdk-mon2"].id,
                                           name="sdk-private")
    try:
        with pytest.raises(exceptions.NotFoundException):
            other.network.get_tap_service(ts.id)
        with pytest.raises(exceptions.HttpException) as err2:
            other.network.create_tap_service(port_id=inventory["ports"]["sdk-vm1"].id)
        assert err2.value.status_code in (403, 404)
        # A port already used by a tap service cannot be a second one's destination.
        with pytest.raises(exceptions.HttpException) as err3:
            member.network.create_tap_service(port_id=inventory["ports"]["sdk-mon2"].id)
        assert err3.value.status_code in (400, 409)
        # A reversed VLAN range is refused.
        with pytest.raises(exceptions.BadRequestException):
            member.network.create_tap_flow(tap_service_id=ts.id, direction="IN",
                                           source_port=inventory["ports"]["sdk-vm1"].id,
                                           vlan_filter="20-10")
    finally:
        member.network.delete_tap_service(ts)
