"""openstacksdk (from PyPI, unchanged) against a real taas-server, with no Keystone:
auth_type admin_token against the token strategy, auth_type none against auth_strategy=noauth."""

from __future__ import annotations

import itertools
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


@pytest.fixture(scope="module")
def noauth_server(server: Any) -> Iterator[Any]:
    """openstacksdk with auth_type none against a taas-server with auth_strategy=noauth.

    keystoneauth's none plugin reads the versions at `/`, follows the v2.0 link and sends no
    token of ours (it sends `X-Auth-Token: notused`, which noauth ignores): the caller is the
    admin of project "admin". Its own database, so the token tests' lists stay exact.
    """
    from taas.testing.postgres import create_database
    from taas.testing.server import run_server

    db_url = None
    if server.db_url.startswith("postgresql"):
        db_url = create_database(server.db_url, "taas_noauth")
    with run_server(db_url=db_url, auth_strategy="noauth") as srv:
        yield srv


def connect_none(url: str, headers: dict[str, str] | None = None
                 ) -> openstack.connection.Connection:
    """auth_type none; `headers` may claim an identity (noauth honours X-Project-Id/X-Roles)."""
    conn = openstack.connect(auth_type="none", auth={"endpoint": url + "/"})
    if headers:
        conn.network.additional_headers = dict(headers)
    return conn


def test_auth_none_crud_and_errors(noauth_server: Any) -> None:
    conn = connect_none(noauth_server.url)
    net = conn.network.create_network(name="none-net", provider_segmentation_id=next(_seg))
    assert net.project_id == "admin"  # noauth with no identity headers: admin of "admin"
    ports = {n: conn.network.create_port(network_id=net.id, name=n)
             for n in ("none-mon", "none-vm1", "none-vm2", "none-vm3")}
    assert {p.name for p in conn.network.ports(network_id=net.id)} == set(ports)

    ts = conn.network.create_tap_service(port_id=ports["none-mon"].id, name="none-ts")
    assert ts.project_id == "admin" and ts.status == "DOWN"
    f1 = conn.network.create_tap_flow(tap_service_id=ts.id, direction="IN",
                                      source_port=ports["none-vm1"].id, name="none-f1")
    f2 = conn.network.create_tap_flow(tap_service_id=ts.id, direction="BOTH",
                                      source_port=ports["none-vm2"].id, name="none-f2",
                                      vlan_filter="5-9")
    # List and filter.
    assert {f.id for f in conn.network.tap_flows()} == {f1.id, f2.id}
    assert [f.id for f in conn.network.tap_flows(name="none-f2")] == [f2.id]
    assert [f.id for f in conn.network.tap_flows(direction="IN")] == [f1.id]
    assert [s.id for s in conn.network.tap_services(port_id=ports["none-mon"].id)] == [ts.id]
    assert conn.network.find_tap_service("none-ts").id == ts.id
    # Update.
    assert conn.network.update_tap_service(ts, description="renamed").description == "renamed"
    upd = conn.network.update_tap_flow(f2, name="none-f2b")
    assert (upd.name, upd.vlan_filter) == ("none-f2b", "5-9")
    assert conn.network.get_tap_service(ts.id).description == "renamed"

    # 409s become ConflictException.
    with pytest.raises(exceptions.ConflictException) as err:
        conn.network.create_tap_service(port_id=ports["none-mon"].id)
    assert err.value.status_code == 409
    tm = conn.network.create_tap_mirror(port_id=ports["none-vm3"].id, directions={"IN": 303},
                                        remote_ip="192.0.2.30", mirror_type="gre")
    with pytest.raises(exceptions.ConflictException):
        conn.network.create_tap_mirror(port_id=ports["none-vm2"].id, directions={"OUT": 303},
                                       remote_ip="192.0.2.31", mirror_type="gre")

    # A caller claiming project-a by headers is a member there: the admin's service does
    # not exist for it, and it may not act for another project.
    member = connect_none(noauth_server.url, {"X-Project-Id": PROJECT, "X-Roles": "member"})
    try:
        with pytest.raises(exceptions.NotFoundException):
            member.network.get_tap_service(ts.id)
        assert list(member.network.tap_services()) == []
        with pytest.raises(exceptions.ForbiddenException):
            member.network.create_tap_service(port_id=ports["none-vm1"].id,
                                              project_id="project-b")
    finally:
        member.close()

    # Delete; afterwards 404 is NotFoundException.
    conn.network.delete_tap_mirror(tm)
    conn.network.delete_tap_flow(f1)
    assert [f.id for f in conn.network.tap_flows()] == [f2.id]
    conn.network.delete_tap_service(ts)  # takes f2 with it
    assert conn.network.find_tap_service(ts.id) is None
    assert list(conn.network.tap_flows()) == []
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_tap_service(ts.id)
    with pytest.raises(exceptions.NotFoundException):
        conn.network.delete_tap_flow(f1.id, ignore_missing=False)
    for p in ports.values():
        conn.network.delete_port(p)
    conn.network.delete_network(net)
    conn.close()


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
