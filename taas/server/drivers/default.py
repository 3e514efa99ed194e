"""The default driver: revisioned, level-triggered desired state per host."""

from __future__ import annotations

from sqlalchemy.orm import Session

from taas.common.desired_state import (
    DesiredState,
    PortFacts,
    TapFlowState,
    TapMirrorState,
    TapServiceState,
)
from taas.server.db.repositories import (
    AgentRepository,
    NetworkRepository,
    PortRepository,
    RevisionRepository,
    TapFlowRepository,
    TapMirrorRepository,
    TapServiceRepository,
)
from taas.server.drivers.base import DriverContext, ServiceDriver
from taas.server.drivers.notifier import CHANNEL


class DefaultDriver(ServiceDriver):
    """Every change bumps the shared revision (precommit) and wakes watchers (postcommit)."""

    def _bump(self, ctx: DriverContext) -> None:
        assert ctx.session is not None
        RevisionRepository(ctx.session).bump(CHANNEL if self.is_postgres else None)

    def _wake(self, ctx: DriverContext) -> None:
        self.notifier.wake()

    create_tap_service_precommit = delete_tap_service_precommit = _bump
    create_tap_flow_precommit = delete_tap_flow_precommit = _bump
    create_tap_mirror_precommit = delete_tap_mirror_precommit = _bump
    state_changed_precommit = _bump
    create_tap_service_postcommit = delete_tap_service_postcommit = _wake
    create_tap_flow_postcommit = delete_tap_flow_postcommit = _wake
    create_tap_mirror_postcommit = delete_tap_mirror_postcommit = _wake
    state_changed_postcommit = _wake

    def desired_state(self, session: Session, host: str) -> DesiredState:
        """What `host` must hold, computed from committed rows (see desired_state.py).

        Scoped by indexed queries from the ports bound to the host, so the cost follows the
        host's share of the resources, not the whole cloud's."""
        revision = RevisionRepository(session).current()
        services_repo, flows_repo = TapServiceRepository(session), TapFlowRepository(session)
        ports_repo = PortRepository(session)
        local = {p.id for p in ports_repo.bound_to(host)}
        dest_here = services_repo.live_with_ports(local)
        flows = {f.id: f for f in flows_repo.live_with_sources(local)}
        flows.update({f.id: f for f in flows_repo.live_of_services(s.id for s in dest_here)})
        services = {s.id: s for s in dest_here}
        services.update({s.id: s for s in services_repo.live_by_ids(
            {f.tap_service_id for f in flows.values()} - set(services))})
        my_flows = [f for f in flows.values() if f.tap_service_id in services]
        my_mirrors = TapMirrorRepository(session).live_with_ports(local)
        named = {s.port_id for s in services.values()} | {f.source_port for f in my_flows}
        named |= {m.port_id for m in my_mirrors}
        ports = ports_repo.get_many(named)
        my_services = [s for s in services.values() if s.port_id in ports]
        my_flows = [f for f in my_flows if f.source_port in ports
                    and services[f.tap_service_id].port_id in ports]

        dest_hosts = {ports[s.port_id].host for s in my_services} - {None}
        tunnel_ips = AgentRepository(session).tunnel_ips(h for h in dest_hosts if h)
        networks = NetworkRepository(session).get_many(p.network_id for p in ports.values())
        base = self.settings.tunnel_key_base
        return DesiredState(
            host=host,
            revision=revision,
            tap_services=tuple(
                TapServiceState(
                    id=s.id, project_id=s.project_id, port_id=s.port_id, taas_id=s.taas_id,
                    vni=base + s.taas_id, dest_host=ports[s.port_id].host,
                    dest_tunnel_ip=tunnel_ips.get(ports[s.port_id].host or ""),
                )
                for s in sorted(my_services, key=lambda s: s.id)
            ),
            tap_flows=tuple(
                TapFlowState(
                    id=f.id, project_id=f.project_id, tap_service_id=f.tap_service_id,
                    source_port=f.source_port, direction=f.direction, vlan_filter=f.vlan_filter,
                )
                for f in sorted(my_flows, key=lambda f: f.id)
            ),
            tap_mirrors=tuple(
                TapMirrorState(
                    id=m.id, project_id=m.project_id, port_id=m.port_id,
                    directions=dict(m.directions), remote_ip=m.remote_ip,
                    mirror_type=m.mirror_type,  # type: ignore[arg-type]
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
