"""Rows -> Neutron wire dicts (responses carry both tenant_id and project_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taas.server.db.models import Agent, Network, Port, TapFilter, TapFlow, TapMirror, TapService
from taas.server.services.counters import statistics


def _ts(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _owned(row: Any) -> dict[str, Any]:
    return {"id": row.id, "tenant_id": row.project_id, "project_id": row.project_id,
            "name": row.name, "description": row.description}


def _limits(row: Any, snaplen: bool = True) -> dict[str, Any]:
    out = {"snaplen": row.snaplen} if snaplen else {}
    return {**out, "max_pps": row.max_pps, "max_kbps": row.max_kbps}


def tap_service(row: TapService) -> dict[str, Any]:
    return {**_owned(row), "port_id": row.port_id, "status": row.status,
            **_limits(row, snaplen=False),
            "statistics": statistics("tap_service", row.counters)}


def tap_flow(row: TapFlow) -> dict[str, Any]:
    return {**_owned(row), "tap_service_id": row.tap_service_id, "source_port": row.source_port,
            "direction": row.direction, "status": row.status, "vlan_filter": row.vlan_filter,
            "tap_filter_id": row.tap_filter_id, **_limits(row),
            "statistics": statistics("tap_flow", row.counters)}


def tap_filter(row: TapFilter) -> dict[str, Any]:
    return {**_owned(row), "default_action": row.default_action,
            "rules": [dict(r) for r in row.rules or ()]}


def tap_mirror(row: TapMirror) -> dict[str, Any]:
    return {**_owned(row), "port_id": row.port_id, "directions": dict(row.directions),
            "remote_ip": row.remote_ip, "mirror_type": row.mirror_type, "status": row.status,
            **_limits(row),
            "statistics": statistics("tap_mirror", row.counters, row.directions)}


def network(row: Network) -> dict[str, Any]:
    return {
        **_owned(row), "provider:network_type": "vxlan",
        "provider:segmentation_id": row.segmentation_id, "provider:physical_network": None,
        "status": "ACTIVE", "admin_state_up": row.admin_state_up, "shared": False,
        "subnets": [], "created_at": _ts(row.created_at),
    }


def port(row: Port) -> dict[str, Any]:
    return {
        **_owned(row), "network_id": row.network_id, "mac_address": row.mac_address,
        "binding:host_id": row.host or "", "device_owner": row.device_owner,
        "device_id": row.device_id, "status": "ACTIVE" if row.host else "DOWN",
        "admin_state_up": row.admin_state_up, "fixed_ips": list(row.fixed_ips or []),
        "created_at": _ts(row.created_at),
    }


def agent(row: Agent, alive: bool) -> dict[str, Any]:
    return {
        "id": row.id, "host": row.host, "agent_type": "TaaS agent", "binary": "taas-agent",
        "configurations": {"tunnel_ip": row.tunnel_ip}, "alive": alive, "admin_state_up": True,
        "heartbeat_timestamp": _ts(row.heartbeat_at), "created_at": _ts(row.created_at),
        "reported_revision": row.reported_revision,
    }
