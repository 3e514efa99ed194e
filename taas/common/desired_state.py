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

Versioned and tolerant: both sides parse with these models, which carry ``version``
(CONTRACT_VERSION) and ignore fields they do not know, so a server or agent one release ahead
may add fields without breaking the other (rolling upgrades). A field's meaning never changes
within a major version; removing or re-purposing one needs a new major version. Revisions are
per host: ``DesiredState.revision`` changes only when this host's state may have changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

# 1: the first versioned contract (the unversioned one of be100a8 is read as version 1 too).
CONTRACT_VERSION = 1

Direction = Literal["IN", "OUT", "BOTH"]
MirrorType = Literal["gre", "erspanv1"]
FilterAction = Literal["mirror", "skip"]
ResourceKind = Literal["tap_service", "tap_flow", "tap_mirror"]
Revision = Annotated[int, Field(ge=0, lt=2**62)]

# Unknown fields are dropped, not refused: the other side may be newer.
TOLERANT = ConfigDict(extra="ignore")

__all__ = [
    "CONTRACT_VERSION", "SAME_EPOCH_MS", "ContractError", "CounterSlot", "CountersReport",
    "DesiredState", "FilterRule", "HostReport", "PortFacts", "ResourceStatus", "SyncStats",
    "TapFilterState", "TapFlowState", "TapMirrorState", "TapServiceState", "ports_digest",
]


class ContractError(ValueError):
    """A message does not follow the contract (a required field missing, a wrong type)."""


def _parse(adapter: TypeAdapter, data: Any, what: str) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise ContractError(f"{what}: {where}: {first['msg']}") from None


@dataclass(frozen=True, config=TOLERANT)
class PortFacts:
    """What the inventory knows of a port named by a resource in this state."""

    port_id: str
    network_id: str
    mac: str
    segmentation_id: int  # the tenant network's VNI
    host: str | None  # binding:host_id; None while no agent has reported the port


@dataclass(frozen=True, config=TOLERANT)
class TapServiceState:
    id: str
    project_id: str
    port_id: str  # destination (monitor) port
    taas_id: int  # VLAN id of the service's copies inside a host
    vni: int  # tunnel key of the service's copies between hosts (dedicated range)
    dest_host: str | None  # host of the destination port
    dest_tunnel_ip: str | None  # tunnel IP reported by dest_host's agent
    # Ceilings on everything delivered to the port (None: unlimited; not sent when None).
    max_pps: int | None = None
    max_kbps: int | None = None


@dataclass(frozen=True, config=TOLERANT)
class FilterRule:
    """One rule of a tap filter (validated by the server; the compiler re-checks nothing
    but the syntax it needs). Unset fields match everything."""

    priority: int  # 1-1000, unique in its filter: the lowest that matches decides
    action: FilterAction
    direction: Literal["IN", "OUT"] | None = None  # None: both
    ethertype: Literal["IPv4", "IPv6"] | None = None
    protocol: str | None = None  # tcp, udp, icmp, icmpv6 or "0".."255"
    source_ip_prefix: str | None = None  # CIDR
    destination_ip_prefix: str | None = None
    source_port_range: str | None = None  # "N" or "N-M" (tcp/udp only)
    destination_port_range: str | None = None


@dataclass(frozen=True, config=TOLERANT)
class TapFilterState:
    id: str
    default_action: FilterAction = "skip"
    rules: tuple[FilterRule, ...] = ()


@dataclass(frozen=True, config=TOLERANT)
class TapFlowState:
    id: str
    project_id: str
    tap_service_id: str
    source_port: str
    direction: Direction
    vlan_filter: str | None  # e.g. "10-20,30"; None mirrors every frame
    # Which frames are copied (applied on the source host); None copies every frame (and is
    # not sent). A versioned agent older than this field ignores it and copies every frame;
    # an unversioned one (be100a8) refuses the state: filters need upgraded agents.
    tap_filter: TapFilterState | None = None
    # Truncation of each copy (bytes; None: the whole frame) and ceilings on this flow's
    # copies (None: unlimited), applied on the source host. Not sent when None (as tap_filter).
    snaplen: int | None = None
    max_pps: int | None = None
    max_kbps: int | None = None


@dataclass(frozen=True, config=TOLERANT)
class TapMirrorState:
    id: str
    project_id: str
    port_id: str
    directions: dict[str, int]  # {"IN": 101, "OUT": 102} or {"BOTH": 103}: tunnel key each
    remote_ip: str
    mirror_type: MirrorType
    snaplen: int | None = None  # as a tap flow's, per direction
    max_pps: int | None = None
    max_kbps: int | None = None


@dataclass(frozen=True, config=TOLERANT)
class DesiredState:
    host: str
    revision: Revision  # this host's revision: changes only when its state may have changed
    tap_services: tuple[TapServiceState, ...] = ()
    tap_flows: tuple[TapFlowState, ...] = ()
    tap_mirrors: tuple[TapMirrorState, ...] = ()
    ports: dict[str, PortFacts] = field(default_factory=dict)
    version: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            **_heading(self),
            "tap_services": [_without_nulls(s, LIMIT_KEYS) for s in self.tap_services],
            "tap_flows": [_without_nulls(f, ("tap_filter", *LIMIT_KEYS))
                          for f in self.tap_flows],
            "tap_mirrors": [_without_nulls(m, LIMIT_KEYS) for m in self.tap_mirrors],
            "ports": {pid: asdict(p) for pid, p in self.ports.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> DesiredState:
        """Parse an answer; unknown fields are ignored, a broken one raises ContractError."""
        return _parse(_DESIRED, data, "desired_state")  # type: ignore[no-any-return]


def _heading(msg: DesiredState | HostReport) -> dict[str, Any]:
    """The keys both messages start with, in their wire order."""
    return {"version": msg.version, "host": msg.host, "revision": msg.revision}


# Optional keys added after the unversioned contract (issue 10).
LIMIT_KEYS = ("snaplen", "max_pps", "max_kbps")


def _without_nulls(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    # No key for an unset option: agents of the unversioned contract (be100a8) refuse unknown
    # keys; only a resource that uses the option needs an agent that knows it.
    out = asdict(obj)
    for k in keys:
        if k in out and out[k] is None:
            del out[k]
    return out


@dataclass(frozen=True, config=TOLERANT)
class ResourceStatus:
    """One resource as an agent holds it on its switch."""

    kind: ResourceKind
    id: Annotated[str, Field(min_length=1, max_length=36)]
    status: Literal["ACTIVE", "ERROR"]
    reason: Annotated[str, Field(max_length=1024)] | None = None


@dataclass(frozen=True, config=TOLERANT)
class HostReport:
    """What an agent reports after each convergence: everything it holds, nothing else.

    A resource absent from the report has no flows on this host. ``taas_ids`` lists every
    taas_id present in the host's flows (read back from the switch), so the server never hands
    out an id whose old flows may still be somewhere.
    """

    host: Annotated[str, Field(min_length=1, max_length=255)]
    revision: Revision  # the host revision the agent converged to
    resources: tuple[ResourceStatus, ...] = ()
    taas_ids: tuple[Annotated[int, Field(ge=0, le=4095)], ...] = ()
    version: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            **_heading(self),
            "resources": [asdict(r) for r in self.resources],
            "taas_ids": list(self.taas_ids),
        }

    def digest(self) -> str:
        """Fingerprint of what the report says (order-insensitive): an agent skips sending a
        report whose digest the server already stored."""
        canon = {"revision": self.revision, "taas_ids": sorted(set(self.taas_ids)),
                 "resources": sorted([r.kind, r.id, r.status, r.reason or ""]
                                     for r in self.resources)}
        return _sha(json.dumps(canon, separators=(",", ":")))

    @classmethod
    def from_dict(cls, data: Any) -> HostReport:
        """Parse a report; unknown fields are ignored, a broken one raises ContractError."""
        return _parse(_REPORT, data, "report")  # type: ignore[no-any-return]


Count = Annotated[int, Field(ge=0, lt=2**63)]
# mirrored, filtered, dropped, delivered, sent; a plain string so that a newer agent's new
# counter is stored and ignored by an older server rather than refused.
CounterName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")]
# Install times (epochs) of one flow computed at different moments differ by a few ms: within
# this they are the same flow, if its counters did not go down.
SAME_EPOCH_MS = 2000
MAX_COUNTER_SLOTS = 5000  # per message (the agent splits bigger batches): well under 1 MiB


@dataclass(frozen=True, config=TOLERANT)
class CounterSlot:
    """The raw counters of one OpenFlow flow (or meter) of the host that counts for a resource.

    ``slot`` names the flow (or meter) on the host, stable while it exists; ``epoch`` is when
    it was installed (ms since the Unix epoch): the raw values only ever grow within one epoch
    of a slot, and restart from 0 with a new one (the flow was re-installed, OVS restarted).
    The server adds the growth (docs/agent-api.md, "Counters").
    """

    kind: ResourceKind
    id: Annotated[str, Field(min_length=1, max_length=36)]
    counter: CounterName  # tap flow: mirrored/filtered/dropped; tap service: delivered/
    # dropped; tap mirror: sent/dropped (per direction)
    slot: Annotated[str, Field(min_length=1, max_length=64)]
    epoch: Annotated[int, Field(ge=0, lt=2**62)]
    packets: Count
    bytes: Count = 0
    direction: Direction | None = None  # tap mirror: the direction key it counts


@dataclass(frozen=True, config=TOLERANT)
class SyncStats:
    """The agent's convergences that changed something, since it started (not the periodic
    checks that found nothing to do: an idle agent sends nothing)."""

    count: Count
    seconds: Annotated[float, Field(ge=0)]
    last_ms: Annotated[float, Field(ge=0)] = 0.0


@dataclass(frozen=True, config=TOLERANT)
class CountersReport:
    """What changed in the host's counters since the agent's last counters report.

    Sent at most every few seconds and only when something changed (the server advertises
    ``counters_interval`` in its register answer; an agent of an older server sends none).
    ``seq`` grows with each report of one agent process (``boot``): a report that arrives
    after a newer one of the same boot is ignored.
    """

    host: Annotated[str, Field(min_length=1, max_length=255)]
    boot: Annotated[str, Field(min_length=1, max_length=64)]
    seq: Annotated[int, Field(ge=0, lt=2**62)]
    counters: Annotated[tuple[CounterSlot, ...], Field(max_length=MAX_COUNTER_SLOTS)] = ()
    syncs: SyncStats | None = None
    version: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = {"version": self.version, "host": self.host, "boot": self.boot, "seq": self.seq,
               "counters": [asdict(c) for c in self.counters]}
        if self.syncs is not None:
            out["syncs"] = asdict(self.syncs)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> CountersReport:
        """Parse a counters report; unknown fields are ignored, a broken one raises
        ContractError."""
        return _parse(_COUNTERS, data, "counters")  # type: ignore[no-any-return]


def ports_digest(port_ids: Any) -> str:
    """Fingerprint of a host's port set: the agent skips the ports call while the server's
    stored digest equals that of its current set (a heartbeat then costs one UPDATE)."""
    return _sha("\n".join(sorted(set(port_ids))))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_DESIRED = TypeAdapter(DesiredState)
_REPORT = TypeAdapter(HostReport)
_COUNTERS = TypeAdapter(CountersReport)
