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

PENDING_DELETE = "PENDING_DELETE"


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
        """What `host` must hold, computed from committed rows (see desired_state.py)."""
        revision = RevisionRepository(session).current()
        services = {s.id: s for s in TapServiceRepository(session).all()
                    if s.status != PENDING_DELETE}
        flows = [f for f in TapFlowRepository(session).all()
                 if f.status != PENDING_DELETE and f.tap_service_id in services]
        mirrors = [m for m in TapMirrorRepository(session).all() if m.status != PENDING_DELETE]
        named = {s.port_id for s in services.values()} | {f.source_port for f in flows}
        named |= {m.port_id for m in mirrors}
        ports = PortRepository(session).get_many(named)

        def host_of(port_id: str) -> str | None:
            port = ports.get(port_id)
            return port.host if port else None

        my_flows = []
        my_service_ids = {sid for sid, s in services.items() if host_of(s.port_id) == host}
        for flow in flows:
            src_host = host_of(flow.source_port)
            dest_host = host_of(services[flow.tap_service_id].port_id)
            if host in (src_host, dest_host) and flow.source_port in ports:
                my_flows.append(flow)
                my_service_ids.add(flow.tap_service_id)
        my_services = [services[sid] for sid in sorted(my_service_ids)
                       if services[sid].port_id in ports]
        my_mirrors = [m for m in mirrors if host_of(m.port_id) == host]

        dest_hosts = {host_of(s.port_id) for s in my_services} - {None}
        tunnel_ips = AgentRepository(session).tunnel_ips(h for h in dest_hosts if h)
        used_ports = {s.port_id for s in my_services} | {f.source_port for f in my_flows}
        used_ports |= {m.port_id for m in my_mirrors}
        networks = {n.id: n for n in (NetworkRepository(session).get(ports[p].network_id)
                                      for p in used_ports) if n}
        base = self.settings.tunnel_key_base
        return DesiredState(
            host=host,
            revision=revision,
            tap_services=tuple(
                TapServiceState(
                    id=s.id, project_id=s.project_id, port_id=s.port_id, taas_id=s.taas_id,
                    vni=base + s.taas_id, dest_host=host_of(s.port_id),
                    dest_tunnel_ip=tunnel_ips.get(host_of(s.port_id) or ""),
                )
                for s in my_services
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
                    port_id=pid, network_id=ports[pid].network_id, mac=ports[pid].mac_address,
                    segmentation_id=networks[ports[pid].network_id].segmentation_id,
                    host=ports[pid].host,
                )
                for pid in sorted(used_ports)
            },
        )
