"""The built-in port inventory: Neutron-compatible networks and ports (policy as Neutron's)."""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

from sqlalchemy.orm import Session

from taas.server.config import Settings
from taas.server.db.models import Network, Port
from taas.server.db.repositories import (
    AgentRepository,
    ListQuery,
    NetworkRepository,
    PortRepository,
)
from taas.server.db.session import UnitOfWork
from taas.server.drivers.base import DriverContext, ServiceDriver
from taas.server.services import errors, lifecycle, projection, validation
from taas.server.services.context import Context, owner_target
from taas.server.services.owned import get_visible, list_visible, update_attrs
from taas.server.services.tap import TapResources, now

FIRST_SEGMENTATION_ID = 1000
MAX_VNI = 2**24 - 1
SEGMENTATION_ID_CHOICES = 64  # an allocated id is drawn from the lowest this many free ids


def _network_owner(project_id: str) -> dict[str, str]:
    """The part of a port's policy target that names its network's owner."""
    return {"network:project_id": project_id, "network:tenant_id": project_id}


class Inventory:
    def __init__(self, settings: Settings, driver: ServiceDriver, taps: TapResources) -> None:
        self.settings = settings
        self.driver = driver
        self.taps = taps

    def start(self) -> None:
        """Background work of a backend (the built-in one has none)."""

    def stop(self) -> None:
        """Undo `start`."""

    def sync_port(self, port_id: str) -> None:
        """Re-read a port from the backend's source now (the built-in one is its own source)."""

    @staticmethod
    def _concerned(uow: UnitOfWork, port_ids: set[str]) -> set[str]:
        """Hosts whose desired state names one of the ports (take it before and after a
        change: a resource leaving a host changes that host too)."""
        return projection.hosts_naming_ports(uow.session, port_ids)

    def _changed(self, uow: UnitOfWork, kind: str, row: Any, hosts: set[str]) -> None:
        """Ports feed desired states (MAC, network, host): bump the hosts concerned."""
        self.taps.changes.touch(uow, hosts)
        self.driver.state_changed_precommit(DriverContext(kind, row, uow.session))
        uow.after_commit(lambda: self.driver.state_changed_postcommit(DriverContext(kind, row)))

    # ---- networks -------------------------------------------------------------------

    def create_network(self, uow: UnitOfWork, ctx: Context, body: Any) -> Network:
        attrs = validation.check_body(validation.NETWORK, body, resource="network")
        project = ctx.authorize_create("network", attrs, body)
        repo = NetworkRepository(uow.session)
        net_id = attrs.get("id") or str(uuid.uuid4())
        if repo.get(net_id) is not None:
            raise errors.IdInUse(f"Network {net_id} already exists")
        taas_range = self.settings.taas_vni_range
        seg = attrs.get("provider:segmentation_id")
        if seg is not None:
            if seg in taas_range:
                raise errors.SegmentationIdConflict(
                    f"Segmentation id {seg} is reserved for tap services "
                    f"({taas_range.start}..{taas_range.stop - 1})"
                )
            if repo.by_segmentation_id(seg) is not None:
                raise errors.SegmentationIdConflict(f"Segmentation id {seg} is already in use")
        else:
            used = repo.segmentation_ids()
            # Like Neutron, pick at random among free ids: concurrent creates then rarely
            # collide (a collision fails on the unique constraint and the transaction retries).
            free = list(itertools.islice(
                (v for v in range(FIRST_SEGMENTATION_ID, MAX_VNI + 1)
                 if v not in used and v not in taas_range),
                SEGMENTATION_ID_CHOICES,
            ))
            if not free:
                raise errors.SegmentationIdConflict("No free segmentation id left")
            seg = random.choice(free)
        row = Network(
            id=net_id, project_id=project, name=attrs["name"], description=attrs["description"],
            segmentation_id=seg, admin_state_up=attrs["admin_state_up"], created_at=now(),
        )
        repo.add(row)
        return row

    def get_network(self, session: Session, ctx: Context, id_: str) -> Network:
        return get_visible(ctx, "network", NetworkRepository(session), id_,
                           errors.NetworkNotFound, "Network")

    def list_networks(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "network", NetworkRepository(session), q)

    def update_network(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any) -> Network:
        row = self.get_network(uow.session, ctx, id_)
        return update_attrs(uow.session, ctx, row, validation.NETWORK, body, "network")

    def delete_network(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        row = self.get_network(uow.session, ctx, id_)
        ctx.authorize_change("delete", "network", owner_target(row.project_id))
        repo = NetworkRepository(uow.session)
        if repo.has_ports(row.id):
            raise errors.NetworkInUse(f"Network {row.id} still has ports")
        repo.remove(row)

    # ---- ports ----------------------------------------------------------------------

    def create_port(self, uow: UnitOfWork, ctx: Context, body: Any) -> Port:
        attrs = validation.check_body(validation.PORT, body, resource="port")
        session = uow.session
        network = NetworkRepository(session).get(attrs["network_id"])
        if network is None:
            raise errors.NetworkNotFound(f"Network {attrs['network_id']} could not be found")
        # An admin registering a VM's port without naming a project means the network's.
        project = ctx.authorize_create(
            "port", attrs, body, default=network.project_id if ctx.is_admin else None,
            **_network_owner(network.project_id))
        if not ctx.sees("network", network.project_id):  # no shared networks here
            raise errors.NetworkNotFound(f"Network {attrs['network_id']} could not be found")
        repo = PortRepository(session)
        port_id = attrs.get("id") or str(uuid.uuid4())
        if repo.get(port_id) is not None:
            raise errors.IdInUse(f"Port {port_id} already exists")
        mac = attrs.get("mac_address")
        if mac is not None and repo.mac_in_use(network.id, mac):
            raise errors.MacAddressInUse(f"MAC address {mac} is in use on network {network.id}")
        while mac is None:
            candidate = "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
            if not repo.mac_in_use(network.id, candidate):
                mac = candidate
        row = Port(
            id=port_id, project_id=project, network_id=network.id, name=attrs["name"],
            description=attrs["description"], mac_address=mac, host=attrs.get("binding:host_id"),
            device_owner=attrs["device_owner"], device_id=attrs["device_id"],
            admin_state_up=attrs["admin_state_up"], fixed_ips=list(attrs["fixed_ips"]),
            created_at=now(),
        )
        repo.add(row)
        hosts = projection.hosts_naming_ports(session, {row.id})
        self._changed(uow, "port", row, hosts | ({row.host} if row.host else set()))
        return row

    def get_port(self, session: Session, ctx: Context, id_: str) -> Port:
        return get_visible(ctx, "port", PortRepository(session), id_,
                           errors.PortNotFound, "Port")

    def list_ports(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "port", PortRepository(session), q)

    def update_port(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any) -> Port:
        row = self.get_port(uow.session, ctx, id_)
        attrs = validation.check_body(validation.PORT, body, update=True, resource="port")
        network = NetworkRepository(uow.session).get(row.network_id)
        ctx.authorize_change("update", "port", owner_target(
            row.project_id, **_network_owner(network.project_id if network else "")),
            attrs.keys())
        # The hosts concerned before and after (a binding change moves resources).
        hosts = projection.hosts_naming_ports(uow.session, {row.id})
        if "binding:host_id" in attrs:  # both agents (woken) re-send their port sets
            both = {h for h in (row.host, attrs["binding:host_id"]) if h}
            AgentRepository(uow.session).unsettle_ports(both)
            hosts |= both
        for key, value in attrs.items():
            setattr(row, "host" if key == "binding:host_id" else key, value)
        uow.session.flush()
        if "binding:host_id" in attrs:
            lifecycle.refresh(uow.session, self.settings.agent_down_time, port_ids={row.id})
        if attrs:  # an empty update changes nothing: no revision bump
            hosts |= projection.hosts_naming_ports(uow.session, {row.id})
            self._changed(uow, "port", row, hosts)
        return row

    def delete_port(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        row = self.get_port(uow.session, ctx, id_)
        ctx.authorize_change("delete", "port", owner_target(row.project_id))
        hosts = projection.hosts_naming_ports(uow.session, {row.id})
        self.taps.delete_port_users(uow, row.id)
        PortRepository(uow.session).remove(row)
        self._changed(uow, "port", row, hosts)
