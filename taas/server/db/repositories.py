"""Repositories: every SQL statement of taas-server lives here."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taas.server.db.models import (
    PENDING_DELETE,
    Agent,
    Base,
    HeldResource,
    HeldTaasId,
    HostRevision,
    Network,
    Port,
    Revision,
    TapFilter,
    TapFlow,
    TapMirror,
    TapMirrorTunnel,
    TapService,
)
from taas.server.services.errors import MarkerNotFound

M = TypeVar("M", bound=Base)


@dataclass
class ListQuery:
    """Filters, sort and page of a list request, already validated against the columns."""

    filters: dict[str, list[Any]] = field(default_factory=dict)
    project_id: str | None = None  # restrict to one project (non-admin callers)
    sort: list[tuple[str, str]] = field(default_factory=list)  # (column, "asc"|"desc")
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False


class Repository(Generic[M]):
    model: type[M]

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, id_: str) -> M | None:
        return self.session.get(self.model, id_)

    def get_many(self, ids: Iterable[str | None]) -> dict[str, M]:
        """Rows by id; ids not found are absent (a None, e.g. an unset tap_filter_id, too)."""
        model: Any = self.model
        wanted = list(set(ids) - {None})
        if not wanted:
            return {}
        return {r.id: r for r in self.session.scalars(select(model).where(model.id.in_(wanted)))}

    def all(self) -> list[M]:
        return list(self.session.scalars(select(self.model)))

    def add(self, obj: M) -> M:
        self.session.add(obj)
        self.session.flush()
        return obj

    def remove(self, obj: M) -> None:
        self.session.delete(obj)
        self.session.flush()

    def pending_unheld(self) -> list[M]:
        """PENDING_DELETE rows no agent's last report holds (waiting only for lagging hosts,
        or for nothing when their ports went away): few, re-checked on every report."""
        model: Any = self.model
        held = select(HeldResource.resource_id).where(HeldResource.resource_id == model.id)
        stmt = select(model).where(model.status == PENDING_DELETE, ~held.exists())
        return list(self.session.scalars(stmt))

    def touching(self, ids: set[str], port_columns: tuple[str, ...],
                 port_ids: set[str]) -> list[M]:
        """Rows with one of `ids`, or whose port columns name one of `port_ids`."""
        conds = [self.model.id.in_(ids)] if ids else []  # type: ignore[attr-defined]
        if port_ids:
            conds += [getattr(self.model, c).in_(port_ids) for c in port_columns]
        if not conds:
            return []
        return list(self.session.scalars(select(self.model).where(or_(*conds))))

    def list(self, q: ListQuery) -> tuple[list[M], bool]:
        """One page of rows and whether more rows follow it in the paging direction.

        Keyset pagination in SQL: rows strictly after the marker row in the sort order."""
        stmt = select(self.model)
        for column, values in q.filters.items():
            col = getattr(self.model, column)
            non_null = [v for v in values if v is not None]
            conds = [col.in_(non_null)] if non_null else []
            if len(non_null) != len(values):
                conds.append(col.is_(None))
            stmt = stmt.where(or_(*conds))
        if q.project_id is not None:
            stmt = stmt.where(self.model.project_id == q.project_id)  # type: ignore[attr-defined]
        sort = list(q.sort) or [("created_at", "asc")]
        if "id" not in [c for c, _ in sort]:
            sort.append(("id", "asc"))
        # Effective order: page_reverse walks backwards from the marker.
        order = [(getattr(self.model, c), (d == "desc") != q.page_reverse) for c, d in sort]
        if q.marker is not None:
            marker = self._marker(q)
            values = [getattr(marker, c) for c, _ in sort]
            if any(v is None for v in values):
                return self._list_after_in_python(stmt, order, q)
            after = []
            for i, (col, desc) in enumerate(order):
                equal = [order[j][0] == values[j] for j in range(i)]
                beyond = col < values[i] if desc else col > values[i]
                after.append(and_(*equal, beyond))
            stmt = stmt.where(or_(*after))
        stmt = stmt.order_by(*[col.desc() if desc else col.asc() for col, desc in order])
        if q.limit is not None:
            stmt = stmt.limit(q.limit + 1)
        rows = list(self.session.scalars(stmt))
        return self._page(rows, q)

    def _marker(self, q: ListQuery) -> M:
        """The marker row, looked up as the caller sees rows: one it may not see is unknown,
        so paging never reveals where another project's rows sort (nor that they exist)."""
        model: Any = self.model
        stmt = select(model).where(model.id == q.marker)
        if q.project_id is not None:
            stmt = stmt.where(model.project_id == q.project_id)
        marker = self.session.scalars(stmt).first()
        if marker is None:
            raise MarkerNotFound(f"Marker {q.marker} could not be found")
        return marker

    def _list_after_in_python(self, stmt, order, q: ListQuery):  # type: ignore[no-untyped-def]
        """Marker rows with NULL sort values: SQL NULL ordering differs per database."""
        stmt = stmt.order_by(*[col.desc() if desc else col.asc() for col, desc in order])
        rows = list(self.session.scalars(stmt))
        ids = [r.id for r in rows]
        rows = rows[ids.index(q.marker) + 1 :] if q.marker in ids else []
        return self._page(rows, q)

    @staticmethod
    def _page(rows: list[M], q: ListQuery) -> tuple[list[M], bool]:
        more = False
        if q.limit is not None and len(rows) > q.limit:
            rows, more = rows[: q.limit], True
        if q.page_reverse:
            rows.reverse()
        return rows, more


class NetworkRepository(Repository[Network]):
    model = Network

    def segmentation_ids(self) -> set[int]:
        return set(self.session.scalars(select(Network.segmentation_id)))

    def by_segmentation_id(self, seg: int) -> Network | None:
        return self.session.scalars(select(Network).where(Network.segmentation_id == seg)).first()

    def has_ports(self, network_id: str) -> bool:
        return self.session.scalar(
            select(func.count()).select_from(Port).where(Port.network_id == network_id)
        ) > 0


class PortRepository(Repository[Port]):
    model = Port

    def mac_in_use(self, network_id: str, mac: str) -> bool:
        stmt = select(Port.id).where(Port.network_id == network_id, Port.mac_address == mac)
        return self.session.scalars(stmt).first() is not None

    def bound_to(self, host: str) -> list[Port]:
        return list(self.session.scalars(select(Port).where(Port.host == host)))

    def set_host(self, port_ids: Iterable[str], host: str | None) -> None:
        ids = list(port_ids)
        if ids:
            self.session.execute(update(Port).where(Port.id.in_(ids)).values(host=host))

    def clear_host(self, host: str) -> None:
        self.session.execute(update(Port).where(Port.host == host).values(host=None))


class LiveRows(Repository[M]):
    """Tap resources: rows stay, PENDING_DELETE, until the hosts confirm their deletion."""

    def live(self) -> Select[tuple[M]]:
        """The base statement of every query for rows that are not being deleted."""
        model: Any = self.model
        return select(model).where(model.status != PENDING_DELETE)

    def _live_in(self, column: Any, values: Iterable[str]) -> list[M]:
        """Live rows whose `column` is one of `values` (no query for none)."""
        wanted = list(values)
        if not wanted:
            return []
        return list(self.session.scalars(self.live().where(column.in_(wanted))))

    def set_status_unless_pending(self, row: M, status: str) -> None:
        """Write a computed status unless a concurrent delete marked the row PENDING_DELETE
        meanwhile (the conditional UPDATE waits for that delete's row lock, then re-checks)."""
        model: Any = self.model
        self.session.execute(
            update(model).where(model.id == row.id, model.status != PENDING_DELETE)
            .values(status=status).execution_options(synchronize_session=False))
        self.session.expire(row, ["status"])


class TapServiceRepository(LiveRows[TapService]):
    model = TapService

    def using_port(self, port_id: str) -> list[TapService]:
        return list(self.session.scalars(select(TapService).where(TapService.port_id == port_id)))

    def active_for_port(self, port_id: str) -> TapService | None:
        return self.session.scalars(self.live().where(TapService.port_id == port_id)).first()

    def live_with_ports(self, port_ids: Iterable[str]) -> list[TapService]:
        """Tap services (not being deleted) whose destination is one of the ports."""
        return self._live_in(TapService.port_id, port_ids)

    def live_by_ids(self, service_ids: Iterable[str]) -> list[TapService]:
        return self._live_in(TapService.id, service_ids)

    def taas_ids_near(self, host: str) -> set[int]:
        """taas_ids of the tap services (any status) in `host`'s scope: destination bound
        there, or fed by a flow whose source is bound there."""
        local = select(Port.id).where(Port.host == host)
        fed = select(TapFlow.tap_service_id).where(TapFlow.source_port.in_(local))
        stmt = select(TapService.taas_id).where(
            or_(TapService.port_id.in_(local), TapService.id.in_(fed)))
        return set(self.session.scalars(stmt))

    def used_taas_ids(self) -> set[int]:
        rows = self.session.scalars(select(TapService.taas_id))
        held = self.session.scalars(select(HeldTaasId.taas_id))
        return set(rows) | set(held)

    def insert_with_taas_id(self, obj: TapService) -> bool:
        """Insert inside a savepoint; False when the taas_id was taken concurrently."""
        try:
            with self.session.begin_nested():
                self.session.add(obj)
                self.session.flush()
        except IntegrityError:
            if self.active_for_port(obj.port_id) is not None:
                raise  # a concurrent create took the port: retried, then a clean 409
            return False
        return True


class TapFlowRepository(LiveRows[TapFlow]):
    model = TapFlow

    def of_service(self, tap_service_id: str) -> list[TapFlow]:
        stmt = select(TapFlow).where(TapFlow.tap_service_id == tap_service_id)
        return list(self.session.scalars(stmt))

    def with_source(self, port_id: str) -> list[TapFlow]:
        return list(self.session.scalars(select(TapFlow).where(TapFlow.source_port == port_id)))

    def live_with_sources(self, port_ids: Iterable[str]) -> list[TapFlow]:
        return self._live_in(TapFlow.source_port, port_ids)

    def live_of_services(self, service_ids: Iterable[str]) -> list[TapFlow]:
        return self._live_in(TapFlow.tap_service_id, service_ids)

    def find_pair(self, source_port: str, tap_service_id: str) -> TapFlow | None:
        stmt = self.live().where(TapFlow.source_port == source_port,
                                 TapFlow.tap_service_id == tap_service_id)
        return self.session.scalars(stmt).first()


class TapFilterRepository(Repository[TapFilter]):
    model = TapFilter

    def live_users(self, filter_id: str) -> list[TapFlow]:
        """Live tap flows that name the filter."""
        stmt = select(TapFlow).where(TapFlow.status != PENDING_DELETE,
                                     TapFlow.tap_filter_id == filter_id)
        return list(self.session.scalars(stmt))


class TapMirrorRepository(LiveRows[TapMirror]):
    model = TapMirror

    def using_port(self, port_id: str) -> list[TapMirror]:
        return list(self.session.scalars(select(TapMirror).where(TapMirror.port_id == port_id)))

    def live_with_ports(self, port_ids: Iterable[str]) -> list[TapMirror]:
        return self._live_in(TapMirror.port_id, port_ids)

    def remote_ip_in(self, addresses: Iterable[str]) -> bool:
        """Whether a tap mirror (in any state: a pending deletion still sends) sends to one
        of `addresses`."""
        stmt = select(TapMirror.id).where(TapMirror.remote_ip.in_(list(addresses)))
        return self.session.scalars(stmt).first() is not None

    def tunnels_in_use(self, tunnel_ids: Sequence[int]) -> list[int]:
        stmt = select(TapMirrorTunnel.tunnel_id).where(TapMirrorTunnel.tunnel_id.in_(tunnel_ids))
        return list(self.session.scalars(stmt))

    def add_tunnels(self, mirror_id: str, tunnel_ids: Iterable[int]) -> bool:
        """Claim tunnel keys; False when another mirror claimed one concurrently."""
        try:
            with self.session.begin_nested():
                for t in tunnel_ids:
                    self.session.add(TapMirrorTunnel(tunnel_id=t, tap_mirror_id=mirror_id))
                self.session.flush()
        except IntegrityError:
            return False
        return True

    def remove_tunnels(self, mirror_id: str) -> None:
        self.session.execute(
            delete(TapMirrorTunnel).where(TapMirrorTunnel.tap_mirror_id == mirror_id)
        )


class AgentRepository(Repository[Agent]):
    model = Agent

    def by_host(self, host: str) -> Agent | None:
        return self.session.scalars(select(Agent).where(Agent.host == host)).first()

    def row_of(self, host: str) -> Any:
        """The host's agent as a plain row (its columns by name), None if unknown: what a
        heartbeat reads, without building an ORM object."""
        return self.session.execute(select(*Agent.__table__.c).where(Agent.host == host)).first()

    def host_with_tunnel_ip(self, addresses: Iterable[str]) -> str | None:
        stmt = select(Agent.host).where(Agent.tunnel_ip.in_(list(addresses)))
        return self.session.scalars(stmt).first()

    def tunnel_ips(self, hosts: Iterable[str]) -> dict[str, str | None]:
        hosts = list(set(hosts))
        if not hosts:
            return {}
        stmt = select(Agent.host, Agent.tunnel_ip).where(Agent.host.in_(hosts))
        return {h: ip for h, ip in self.session.execute(stmt)}

    def replace_report(
        self, host: str, resources: list[tuple[str, str, str, str | None]], taas_ids: set[int]
    ) -> None:
        self.forget_holdings(host)
        for kind, rid, status, reason in resources:
            self.session.add(
                HeldResource(host=host, kind=kind, resource_id=rid, status=status, reason=reason)
            )
        for tid in taas_ids:
            self.session.add(HeldTaasId(host=host, taas_id=tid))
        self.session.flush()

    def forget_holdings(self, host: str) -> None:
        self.session.execute(delete(HeldResource).where(HeldResource.host == host))
        self.session.execute(delete(HeldTaasId).where(HeldTaasId.host == host))

    def holdings(self, kind: str | None = None) -> list[HeldResource]:
        stmt = select(HeldResource)
        if kind:
            stmt = stmt.where(HeldResource.kind == kind)
        return list(self.session.scalars(stmt))

    def holdings_of(self, resource_ids: Iterable[str]) -> list[HeldResource]:
        ids = list(set(resource_ids))
        if not ids:
            return []
        stmt = select(HeldResource).where(HeldResource.resource_id.in_(ids))
        return list(self.session.scalars(stmt))

    def held_taas_ids(self, host: str) -> set[int]:
        stmt = select(HeldTaasId.taas_id).where(HeldTaasId.host == host)
        return set(self.session.scalars(stmt))

    def held_ids(self, host: str) -> set[str]:
        stmt = select(HeldResource.resource_id).where(HeldResource.host == host)
        return set(self.session.scalars(stmt))

    def unsettle_ports(self, hosts: Iterable[str]) -> None:
        """Forget the port-set digests of hosts whose bindings changed by another path: their
        agents send their whole set again at the next heartbeat."""
        hosts = [h for h in set(hosts) if h]
        if hosts:
            self.session.execute(update(Agent).where(Agent.host.in_(hosts))
                                 .values(ports_digest=None))

    def heartbeat(self, hosts: Iterable[str], stamp: datetime) -> None:
        hosts = list(hosts)
        if hosts:
            self.session.execute(update(Agent).where(Agent.host.in_(hosts))
                                 .values(heartbeat_at=stamp))

    def sources_of_services_at(self, host: str) -> set[str]:
        """Hosts of the live flows' sources feeding a tap service whose destination is bound
        to `host` (their states carry `host`'s tunnel IP)."""
        dest = select(Port.id).where(Port.host == host)
        services = select(TapService.id).where(TapService.port_id.in_(dest),
                                               TapService.status != PENDING_DELETE)
        sources = select(TapFlow.source_port).where(TapFlow.tap_service_id.in_(services),
                                                    TapFlow.status != PENDING_DELETE)
        stmt = select(Port.host).where(Port.id.in_(sources), Port.host.is_not(None)).distinct()
        return set(self.session.scalars(stmt))

    def alive_reported_revisions(
        self, since: datetime, hosts: Iterable[str] | None = None
    ) -> dict[str, int | None]:
        """Last reported revision of the agents heard from since `since` (of `hosts`, or all
        such agents when None)."""
        stmt = select(Agent.host, Agent.reported_revision).where(Agent.heartbeat_at >= since)
        if hosts is not None:
            hosts = list(set(hosts))
            if not hosts:
                return {}
            stmt = stmt.where(Agent.host.in_(hosts))
        return {h: r for h, r in self.session.execute(stmt)}

    def holders(self, kind: str, resource_id: str) -> set[str]:
        stmt = select(HeldResource.host).where(
            HeldResource.kind == kind, HeldResource.resource_id == resource_id
        )
        return set(self.session.scalars(stmt))

    def is_held(self, kind: str, resource_id: str) -> bool:
        stmt = select(HeldResource.host).where(
            HeldResource.kind == kind, HeldResource.resource_id == resource_id
        )
        return self.session.scalars(stmt).first() is not None


ADDRESS_LOCK = 0x7A6  # first key of pg_advisory_xact_lock(int, int): "taas address" (0x7A5: quotas)


def lock_address(session: Session, address: str) -> None:
    """Serialise the transactions that check one tunnel address against the other table
    (an agent's tunnel_ip, a tap mirror's remote_ip) before claiming it: on PostgreSQL a
    transaction-scoped advisory lock, after which READ COMMITTED shows the other side's
    committed row. (SQLite: this process's writes are serialised already.)"""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(address.encode()) - 2**31  # a signed 32-bit key
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                        {"ns": ADDRESS_LOCK, "key": key})


class RevisionRepository:
    """The revision counter and the hosts' revisions."""

    _TAKEN = "taas_revision"  # session.info key: the value this transaction took

    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self) -> int:
        return int(self.session.scalar(select(Revision.value).where(Revision.id == 1)) or 0)

    def of_host(self, host: str) -> int:
        stmt = select(HostRevision.revision).where(HostRevision.host == host)
        return int(self.session.scalar(stmt) or 0)

    def watch_facts(self, host: str) -> tuple[int, str | None, str | None]:
        """The host's revision and its agent's port-set and report digests, in one SELECT
        (what a long-poll answer needs besides the cached state)."""
        revision = select(HostRevision.revision).where(HostRevision.host == host)
        ports = select(Agent.ports_digest).where(Agent.host == host)
        report = select(Agent.report_digest).where(Agent.host == host)
        row = self.session.execute(select(revision.scalar_subquery(), ports.scalar_subquery(),
                                          report.scalar_subquery())).one()
        return int(row[0] or 0), row[1], row[2]

    def of_hosts(self, hosts: Iterable[str]) -> dict[str, int]:
        hosts = list(set(hosts))
        if not hosts:
            return {}
        stmt = select(HostRevision.host, HostRevision.revision).where(
            HostRevision.host.in_(hosts))
        found = {h: int(r) for h, r in self.session.execute(stmt)}
        return {h: found.get(h, 0) for h in hosts}

    def taken(self) -> int | None:
        """The value this transaction took, if it changed any host."""
        return self.session.info.get(self._TAKEN)

    def bump_hosts(self, hosts: Iterable[str], notify_channel: str | None = None) -> int:
        """Give `hosts` this transaction's revision (the counter's next value, taken once per
        transaction); on PostgreSQL also NOTIFY their names (delivered at commit).

        The counter's row lock serialises these transactions on PostgreSQL, so the hosts'
        rows are read and inserted without racing another writer."""
        value = self.taken()
        if value is None:
            self.session.execute(
                update(Revision).where(Revision.id == 1).values(value=Revision.value + 1))
            value = self.current()
            self.session.info[self._TAKEN] = value
        hosts = sorted(set(hosts))
        if not hosts:
            return value
        self.session.execute(update(HostRevision).where(HostRevision.host.in_(hosts))
                             .values(revision=value))
        have = set(self.session.scalars(
            select(HostRevision.host).where(HostRevision.host.in_(hosts))))
        for host in hosts:
            if host not in have:
                self.session.add(HostRevision(host=host, revision=value))
        self.session.flush()
        if notify_channel:
            self.session.execute(text("SELECT pg_notify(:ch, :hosts)"),
                                 {"ch": notify_channel, "hosts": notify_payload(hosts)})
        return value


NOTIFY_ALL = "*"


def notify_payload(hosts: Sequence[str]) -> str:
    """Host names as a JSON list; '*' (every host) past PostgreSQL's 8000-byte payload limit."""
    payload = json.dumps(list(hosts))
    return payload if len(payload.encode()) < 7900 else NOTIFY_ALL
