"""Status of tap resources from agents' reports, and removal of confirmed deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from taas.server.db.repositories import (
    AgentRepository,
    PortRepository,
    RevisionRepository,
    TapFlowRepository,
    TapMirrorRepository,
    TapServiceRepository,
)
from taas.server.services import projection

PENDING_DELETE = "PENDING_DELETE"


def aggregate_status(hosts: list[str | None], reported: dict[str, str]) -> str:
    """ERROR if any involved host reports ERROR; ACTIVE if every involved host (all bound)
    reports ACTIVE; DOWN otherwise. Reports of hosts no longer involved (a port moved away,
    their stale copy not yet removed) do not count."""
    reported = {h: s for h, s in reported.items() if h in hosts}
    if "ERROR" in reported.values():
        return "ERROR"
    if hosts and None not in hosts and all(reported.get(h) == "ACTIVE" for h in hosts if h):
        return "ACTIVE"
    return "DOWN"


def alive_since(down_time: int) -> datetime:
    """Heartbeats are stored to the second: so is this bound, as in Agents.is_alive (else an
    agent that beat 0.9 s ago would count as dead with a down time of 1 s)."""
    return (datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            - timedelta(seconds=down_time))


def may_be_installing(session: Session, kind: str, row: Any, down_time: int) -> bool:
    """Whether a host may hold the resource without having reported it yet. Deleting such a
    resource at once could free a taas_id (or tunnel id) whose flows are being installed.

    The hosts are those whose state holds it (placement rule) and those whose last report
    holds it; dead agents do not block deletion (the taas_ids of their last reports still
    block reuse). Per host, not global: a live resource waits for hosts behind their own
    revision; a PENDING_DELETE one only for hosts behind the revision at which it left their
    states (``retired_revision``), so other tenants' changes never delay it."""
    agents = AgentRepository(session)
    hosts = projection.hosts_of(session, kind, row) | agents.holders(kind, row.id)
    reported = agents.alive_reported_revisions(alive_since(down_time), hosts)
    if not reported:
        return False
    retired = row.retired_revision if row.status == PENDING_DELETE else None
    gate = (dict.fromkeys(reported, retired) if retired is not None
            else RevisionRepository(session).of_hosts(reported))
    return any(rev is None or rev < gate[h] for h, rev in reported.items())


def refresh(
    session: Session, down_time: int, resource_ids: set[str] | None = None,
    port_ids: set[str] | None = None, pending: bool = False,
) -> None:
    """Recompute statuses, then delete PENDING_DELETE rows that no host holds any more.

    Scoped to the given resources and to those naming the given ports (a report touches only
    what the host held or holds; a binding change only what uses the ports); None = all.
    `pending` adds the PENDING_DELETE rows nobody holds: a report or an agent's removal may be
    what they waited for, even when their ports (and so the host's scope) are gone."""
    services_repo = TapServiceRepository(session)
    flows_repo = TapFlowRepository(session)
    mirrors_repo = TapMirrorRepository(session)
    agents = AgentRepository(session)
    repos = {"tap_service": services_repo, "tap_flow": flows_repo, "tap_mirror": mirrors_repo}
    if resource_ids is None and port_ids is None:
        services, flows, mirrors = services_repo.all(), flows_repo.all(), mirrors_repo.all()
        holdings = agents.holdings()
    else:
        rids, pids = resource_ids or set(), port_ids or set()
        if pending:
            rids = rids | {r.id for repo in (services_repo, flows_repo, mirrors_repo)
                           for r in repo.pending_unheld()}
        services = services_repo.touching(rids, ("port_id",), pids)
        flows_by_id = {f.id: f for f in flows_repo.touching(rids, ("source_port",), pids)}
        # A service's destination host also decides its flows' status.
        flows_by_id.update({f.id: f for f in flows_repo.touching(
            set(), ("tap_service_id",), {s.id for s in services})})
        flows = list(flows_by_id.values())
        missing = {f.tap_service_id for f in flows} - {s.id for s in services}
        services += services_repo.touching(missing, (), set())
        mirrors = mirrors_repo.touching(rids, ("port_id",), pids)
        holdings = agents.holdings_of(
            {s.id for s in services} | {f.id for f in flows} | {m.id for m in mirrors})
    held: dict[tuple[str, str], dict[str, str]] = {}
    for h in holdings:
        held.setdefault((h.kind, h.resource_id), {})[h.host] = h.status
    by_id = {s.id: s for s in services}
    named = [s.port_id for s in services] + [f.source_port for f in flows]
    ports = PortRepository(session).get_many(named + [m.port_id for m in mirrors])

    def host(port_id: str) -> str | None:
        port = ports.get(port_id)
        return port.host if port else None

    def update(row, kind: str, hosts: list[str | None]) -> None:  # type: ignore[no-untyped-def]
        if row.status == PENDING_DELETE:
            return
        status = aggregate_status(hosts, held.get((kind, row.id), {}))
        if status != row.status:
            repos[kind].set_status_unless_pending(row, status)

    for s in services:
        update(s, "tap_service", [host(s.port_id)])
    for f in flows:
        update(f, "tap_flow", [host(f.source_port), host(by_id[f.tap_service_id].port_id)])
    for m in mirrors:
        update(m, "tap_mirror", [host(m.port_id)])
    session.flush()

    def gone(kind: str, row: Any) -> bool:
        return (row.status == PENDING_DELETE and (kind, row.id) not in held
                and not may_be_installing(session, kind, row, down_time))

    for f in flows:
        if gone("tap_flow", f):
            flows_repo.remove(f)
    for s in services:
        if gone("tap_service", s) and not flows_repo.of_service(s.id):
            services_repo.remove(s)
    for m in mirrors:
        if gone("tap_mirror", m):
            mirrors_repo.remove(m)
