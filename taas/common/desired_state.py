"""The desired state of one host: what the server publishes and what an agent converges to.

This module is the contract between taas-server (which computes it from the database) and
taas-agent (which compiles it into flows). It is pure data: no I/O. Delivery is level-triggered:
every answer carries the *full* state of the host, so an agent that missed changes, restarted or
was offline converges from one answer.

A host's state holds:
- ``tap_services`` whose destination port is bound to this host (the host delivers copies to
  the monitor port), and those that receive copies from a source port on this host (the host
  only needs to know where to send them: ``dest_host``/``dest_tunnel_ip``);
- ``tap_flows`` whose source port is bound to this host (the host makes the copies) or whose
  tap service's destination is on this host (listed so that the host reports their status);
- ``tap_mirrors`` whose port is bound to this host;
- ``ports``: inventory facts (network, MAC, VNI) of every port those resources name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Direction = Literal["IN", "OUT", "BOTH"]
MirrorType = Literal["gre", "erspanv1"]
ResourceKind = Literal["tap_service", "tap_flow", "tap_mirror"]


@dataclass(frozen=True)
class PortFacts:
    """What the inventory knows of a port named by a resource in this state."""

    port_id: str
    network_id: str
    mac: str
    segmentation_id: int  # the tenant network's VNI
    host: str | None  # binding:host_id; None while no agent has reported the port


@dataclass(frozen=True)
class TapServiceState:
    id: str
    project_id: str
    port_id: str  # destination (monitor) port
    taas_id: int  # VLAN id of the service's copies inside a host
    vni: int  # tunnel key of the service's copies between hosts (dedicated range)
    dest_host: str | None  # host of the destination port
    dest_tunnel_ip: str | None  # tunnel IP reported by dest_host's agent


@dataclass(frozen=True)
class TapFlowState:
    id: str
    project_id: str
    tap_service_id: str
    source_port: str
    direction: Direction
    vlan_filter: str | None  # e.g. "10-20,30"; None mirrors every frame


@dataclass(frozen=True)
class TapMirrorState:
    id: str
    project_id: str
    port_id: str
    directions: dict[str, int]  # {"IN": 101, "OUT": 102} or {"BOTH": 103}: tunnel key each
    remote_ip: str
    mirror_type: MirrorType


@dataclass(frozen=True)
class DesiredState:
    host: str
    revision: int
    tap_services: tuple[TapServiceState, ...] = ()
    tap_flows: tuple[TapFlowState, ...] = ()
    tap_mirrors: tuple[TapMirrorState, ...] = ()
    ports: dict[str, PortFacts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "revision": self.revision,
            "tap_services": [asdict(s) for s in self.tap_services],
            "tap_flows": [asdict(f) for f in self.tap_flows],
            "tap_mirrors": [asdict(m) for m in self.tap_mirrors],
            "ports": {pid: asdict(p) for pid, p in self.ports.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredState:
        return cls(
            host=data["host"],
            revision=int(data["revision"]),
            tap_services=tuple(TapServiceState(**s) for s in data.get("tap_services", [])),
            tap_flows=tuple(TapFlowState(**f) for f in data.get("tap_flows", [])),
            tap_mirrors=tuple(
                TapMirrorState(**{**m, "directions": dict(m["directions"])})
                for m in data.get("tap_mirrors", [])
            ),
            ports={pid: PortFacts(**p) for pid, p in data.get("ports", {}).items()},
        )


@dataclass(frozen=True)
class ResourceStatus:
    """One resource as an agent holds it on its switch."""

    kind: ResourceKind
    id: str
    status: Literal["ACTIVE", "ERROR"]
    reason: str | None = None


@dataclass(frozen=True)
class HostReport:
    """What an agent reports after each convergence: everything it holds, nothing else.

    A resource absent from the report has no flows on this host. ``taas_ids`` lists every
    taas_id present in the host's flows (read back from the switch), so the server never hands
    out an id whose old flows may still be somewhere.
    """

    host: str
    revision: int  # the desired-state revision the agent converged to
    resources: tuple[ResourceStatus, ...] = ()
    taas_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "revision": self.revision,
            "resources": [asdict(r) for r in self.resources],
            "taas_ids": list(self.taas_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostReport:
        return cls(
            host=data["host"],
            revision=int(data["revision"]),
            resources=tuple(ResourceStatus(**r) for r in data.get("resources", [])),
            taas_ids=tuple(int(i) for i in data.get("taas_ids", [])),
        )
