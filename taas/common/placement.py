"""Which hosts a tap resource concerns: the one rule shared by the server's projection, its
status/deletion lifecycle, its per-host revisions, and the tests' model of a cloud.

A host's desired state holds
- a tap mirror whose port is bound to the host;
- a tap flow whose source port is bound to the host (it makes the copies) or whose tap
  service's destination port is (it delivers them, and reports the flow's status);
- a tap service whose destination port is bound to the host, or that one of its flows feeds
  from a source port bound to the host (the host must know where to send the copies).

Works on anything with the resources' attribute names (database rows, the contract's states).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

HostOf = Callable[[str], "str | None"]  # port id -> bound host, None when unbound or unknown


class ServiceLike(Protocol):
    id: str
    port_id: str


class FlowLike(Protocol):
    tap_service_id: str
    source_port: str


class MirrorLike(Protocol):
    port_id: str


S = TypeVar("S", bound=ServiceLike)
F = TypeVar("F", bound=FlowLike)
M = TypeVar("M", bound=MirrorLike)


def _hosts(host_of: HostOf, port_ids: Iterable[str]) -> set[str]:
    return {h for p in port_ids if (h := host_of(p))}


def flow_hosts(flow: FlowLike, dest_port: str | None, host_of: HostOf) -> set[str]:
    """Hosts of a tap flow: its source's and its tap service's destination's."""
    return _hosts(host_of, [flow.source_port] + ([dest_port] if dest_port else []))


def service_hosts(service: ServiceLike, flows: Iterable[FlowLike], host_of: HostOf) -> set[str]:
    """Hosts of a tap service: its destination's and those of its (live) flows' sources."""
    return _hosts(host_of, [service.port_id] + [f.source_port for f in flows
                                               if f.tap_service_id == service.id])


def mirror_hosts(mirror: MirrorLike, host_of: HostOf) -> set[str]:
    return _hosts(host_of, [mirror.port_id])


def host_share(
    host: str, services: Iterable[S], flows: Iterable[F], mirrors: Iterable[M], host_of: HostOf
) -> tuple[list[S], list[F], list[M]]:
    """The resources (among live candidates) that `host`'s desired state holds."""
    by_id = {s.id: s for s in services}
    my_flows = [f for f in flows if f.tap_service_id in by_id
                and host in flow_hosts(f, by_id[f.tap_service_id].port_id, host_of)]
    wanted = {f.tap_service_id for f in my_flows}
    my_services = [s for s in by_id.values() if s.id in wanted or host_of(s.port_id) == host]
    my_mirrors = [m for m in mirrors if host in mirror_hosts(m, host_of)]
    return my_services, my_flows, my_mirrors


def named_ports(services: Iterable[Any], flows: Iterable[Any], mirrors: Iterable[Any]) -> set[str]:
    """Every port the resources name (their facts go into the desired state)."""
    return ({s.port_id for s in services} | {f.source_port for f in flows}
            | {m.port_id for m in mirrors})
