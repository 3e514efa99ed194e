"""The desired-state projection and per-host revisions.

- ``desired_state``: what a host must hold, computed from committed rows (desired_state.py);
- ``hosts_of`` / ``hosts_naming_ports`` / ``hosts_fed_by``: which hosts a change concerns,
  all from the one rule in taas/common/placement.py;
- ``Changes.touch``: a write gives the hosts it concerns this transaction's revision and,
  after the commit, wakes their long-polls (and only theirs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from taas.common import placement
from taas.common.desired_state import (
    DesiredState,
    FilterRule,
    PortFacts,
    TapFilterState,
    TapFlowState,
    TapMirrorState,
    TapServiceState,
)
from taas.server.config import Settings
from taas.server.db.models import Port, TapFilter
from taas.server.db.repositories import (
    AgentRepository,
    NetworkRepository,
    PortRepository,
    RevisionRepository,
    TapFilterRepository,
    TapFlowRepository,
    TapMirrorRepository,
    TapServiceRepository,
)
from taas.server.db.session import UnitOfWork
from taas.server.drivers.notifier import CHANNEL, RevisionNotifier


def _host_of(ports: dict[str, Port]) -> placement.HostOf:
    return lambda pid: p.host if (p := ports.get(pid)) is not None else None


def hosts_of(session: Session, kind: str, row: Any) -> set[str]:
    """The hosts whose desired state holds (or, for a new row, will hold) the resource."""
    ports = PortRepository(session)
    if kind == "tap_flow":
        service = TapServiceRepository(session).get(row.tap_service_id)
        dest = service.port_id if service is not None else None
        named = ports.get_many([row.source_port] + ([dest] if dest else []))
        return placement.flow_hosts(row, dest, _host_of(named))
    if kind == "tap_service":
        flows = TapFlowRepository(session).live_of_services([row.id])
        named = ports.get_many([row.port_id] + [f.source_port for f in flows])
        return placement.service_hosts(row, flows, _host_of(named))
    return placement.mirror_hosts(row, _host_of(ports.get_many([row.port_id])))


def hosts_naming_ports(session: Session, port_ids: Iterable[str]) -> set[str]:
    """The hosts whose desired state holds a live resource naming one of the ports."""
    pids = set(port_ids)
    if not pids:
        return set()
    services_repo, flows_repo = TapServiceRepository(session), TapFlowRepository(session)
    services = {s.id: s for s in services_repo.live_with_ports(pids)}
    flows = {f.id: f for f in flows_repo.live_with_sources(pids)}
    flows.update({f.id: f for f in flows_repo.live_of_services(services)})
    services.update({s.id: s for s in services_repo.live_by_ids(
        {f.tap_service_id for f in flows.values()} - set(services))})
    # A service's other flows' sources also hold it.
    flows.update({f.id: f for f in flows_repo.live_of_services(services)})
    mirrors = TapMirrorRepository(session).live_with_ports(pids)
    ports = PortRepository(session).get_many(
        placement.named_ports(services.values(), flows.values(), mirrors))
    host_of = _host_of(ports)
    hosts: set[str] = set()
    for s in services.values():
        hosts |= placement.service_hosts(s, flows.values(), host_of)
    for m in mirrors:
        hosts |= placement.mirror_hosts(m, host_of)
    return hosts


def hosts_fed_by(session: Session, host: str) -> set[str]:
    """Hosts whose state names `host` as a tap service's destination (its tunnel IP)."""
    return {host} | AgentRepository(session).sources_of_services_at(host)


class Changes:
    """Per-host revisions of a write, and the wake-up of those hosts after its commit."""

    def __init__(self, notifier: RevisionNotifier, is_postgres: bool) -> None:
        self.notifier = notifier
        self.is_postgres = is_postgres

    def touch(self, uow: UnitOfWork, hosts: Iterable[str]) -> int | None:
        """Give `hosts` this transaction's revision; returns it (None if no host)."""
        hosts = set(hosts)
        if not hosts:
            return RevisionRepository(uow.session).taken()
        value = RevisionRepository(uow.session).bump_hosts(
            hosts, CHANNEL if self.is_postgres else None)
        # On PostgreSQL the NOTIFY wakes this replica too; on SQLite (one process) wake here.
        if not self.is_postgres:
            uow.after_commit(lambda: self.notifier.wake(hosts))
        return value


def _filter_state(filter_id: str, row: TapFilter | None) -> TapFilterState:
    if row is None:  # deleted while a flow being deleted still names it: copy nothing
        return TapFilterState(filter_id, "skip", ())
    return TapFilterState(row.id, row.default_action,  # type: ignore[arg-type]
                          tuple(FilterRule(**r) for r in row.rules or ()))


def desired_state(session: Session, settings: Settings, host: str) -> DesiredState:
    """What `host` must hold, computed from committed rows (see desired_state.py).

    Scoped by indexed queries from the ports bound to the host, so the cost follows the host's
    share of the resources, not the whole cloud's."""
    revision = RevisionRepository(session).of_host(host)
    services_repo, flows_repo = TapServiceRepository(session), TapFlowRepository(session)
    ports_repo = PortRepository(session)
    local = {p.id for p in ports_repo.bound_to(host)}
    dest_here = services_repo.live_with_ports(local)
    flows = {f.id: f for f in flows_repo.live_with_sources(local)}
    flows.update({f.id: f for f in flows_repo.live_of_services(s.id for s in dest_here)})
    services = {s.id: s for s in dest_here}
    services.update({s.id: s for s in services_repo.live_by_ids(
        {f.tap_service_id for f in flows.values()} - set(services))})
    mirrors = TapMirrorRepository(session).live_with_ports(local)
    ports = ports_repo.get_many(placement.named_ports(services.values(), flows.values(),
                                                      mirrors))
    # Rows may outlive their port while agents confirm a deletion: such rows are not shown.
    my_services, my_flows, my_mirrors = placement.host_share(
        host, [s for s in services.values() if s.port_id in ports],
        [f for f in flows.values() if f.source_port in ports], mirrors, _host_of(ports))
    ports = {pid: p for pid, p in ports.items()
             if pid in placement.named_ports(my_services, my_flows, my_mirrors)}

    dest_hosts = {ports[s.port_id].host for s in my_services} - {None}
    tunnel_ips = AgentRepository(session).tunnel_ips(h for h in dest_hosts if h)
    networks = NetworkRepository(session).get_many(p.network_id for p in ports.values())
    base = settings.tunnel_key_base
    filters = TapFilterRepository(session).get_many(
        f.tap_filter_id for f in my_flows if f.tap_filter_id)
    return DesiredState(
        host=host,
        revision=revision,
        tap_services=tuple(
            TapServiceState(
                id=s.id, project_id=s.project_id, port_id=s.port_id, taas_id=s.taas_id,
                vni=base + s.taas_id, dest_host=ports[s.port_id].host,
                dest_tunnel_ip=tunnel_ips.get(ports[s.port_id].host or ""),
                max_pps=s.max_pps, max_kbps=s.max_kbps,
            )
            for s in sorted(my_services, key=lambda s: s.id)
        ),
        tap_flows=tuple(
            TapFlowState(
                id=f.id, project_id=f.project_id, tap_service_id=f.tap_service_id,
                source_port=f.source_port, direction=f.direction,  # type: ignore[arg-type]
                vlan_filter=f.vlan_filter,
                tap_filter=(None if f.tap_filter_id is None
                            else _filter_state(f.tap_filter_id, filters.get(f.tap_filter_id))),
                snaplen=f.snaplen, max_pps=f.max_pps, max_kbps=f.max_kbps,
            )
            for f in sorted(my_flows, key=lambda f: f.id)
        ),
        tap_mirrors=tuple(
            TapMirrorState(
                id=m.id, project_id=m.project_id, port_id=m.port_id,
                directions=dict(m.directions), remote_ip=m.remote_ip,
                mirror_type=m.mirror_type,  # type: ignore[arg-type]
                snaplen=m.snaplen, max_pps=m.max_pps, max_kbps=m.max_kbps,
            )
            for m in sorted(my_mirrors, key=lambda m: m.id)
        ),
        ports={
            pid: PortFacts(
                port_id=pid, network_id=port.network_id, mac=port.mac_address,
                segmentation_id=networks[port.network_id].segmentation_id, host=port.host,
            )
            for pid, port in sorted(ports.items())
        },
    )
