"""Tap services, tap flows and tap mirrors: the rules the original plugin lacks included."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from taas.server.config import Settings
from taas.server.db.models import Port, TapFlow, TapMirror, TapService
from taas.server.db.repositories import (
    AgentRepository,
    ListQuery,
    PortRepository,
    Repository,
    RevisionRepository,
    TapFilterRepository,
    TapFlowRepository,
    TapMirrorRepository,
    TapServiceRepository,
    lock_address,
)
from taas.server.db.session import UnitOfWork
from taas.server.drivers.base import DriverContext, ServiceDriver
from taas.server.services import errors, lifecycle, projection, validation
from taas.server.services.context import Context, owner_target
from taas.server.services.owned import get_visible, list_visible, update_attrs
from taas.server.services.quotas import Quotas

LOG = logging.getLogger(__name__)
PENDING_DELETE = lifecycle.PENDING_DELETE


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def free_taas_ids(start: int, end: int, used: set[int]) -> Iterator[int]:
    """Candidate taas_ids of [start, end), lowest first, skipping those in use (rows or any
    agent's report)."""
    return (i for i in range(start, end) if i not in used)


Hook = Callable[[DriverContext], None]


def _limits(attrs: dict[str, Any], spec: dict[str, validation.Attr]) -> dict[str, Any]:
    """The limit attributes of a create (null when not given)."""
    return {k: attrs.get(k) for k in spec}


@dataclass(frozen=True)
class _Kind:
    """A tap resource type and the driver hooks its shared create/delete paths call."""

    name: str  # DriverContext.kind, and the kind agents report
    model: type[TapService] | type[TapFlow] | type[TapMirror]
    create_postcommit: Hook
    delete_precommit: Hook
    delete_postcommit: Hook


class TapResources:
    """The tap-as-a-service plugin: create/read/update/delete with every ownership check."""

    def __init__(self, settings: Settings, driver: ServiceDriver,
                 quotas: Quotas | None = None) -> None:
        self.settings = settings
        self.driver = driver
        self.quotas = quotas or Quotas(settings)
        d = driver
        self._services = _Kind("tap_service", TapService, d.create_tap_service_postcommit,
                               d.delete_tap_service_precommit, d.delete_tap_service_postcommit)
        self._flows = _Kind("tap_flow", TapFlow, d.create_tap_flow_postcommit,
                            d.delete_tap_flow_precommit, d.delete_tap_flow_postcommit)
        self._mirrors = _Kind("tap_mirror", TapMirror, d.create_tap_mirror_postcommit,
                              d.delete_tap_mirror_precommit, d.delete_tap_mirror_postcommit)
        self.changes = projection.Changes(driver.notifier, driver.is_postgres)
        # A port backend's read-through for port ids its replica does not know (yet).
        self.port_miss: Callable[[UnitOfWork, str], Port | None] | None = None

    # ---- shared helpers -------------------------------------------------------------

    def _after_create(self, uow: UnitOfWork, kind: _Kind, row: Any) -> None:
        """Postcommit hook; on failure the row is deleted again and the caller gets an error."""
        def post() -> None:
            try:
                kind.create_postcommit(DriverContext(kind.name, row))
            except Exception as exc:
                raise errors.DriverError(
                    f"The service driver failed to create {kind.name} {row.id}; it was removed",
                    str(exc),
                ) from exc

        def undo(undo_uow: UnitOfWork) -> None:
            session = undo_uow.session
            obj = session.get(kind.model, row.id)
            if obj is not None:
                self.changes.touch(undo_uow, projection.hosts_of(session, kind.name, obj))
                if kind.model is TapService:
                    for flow in TapFlowRepository(session).of_service(obj.id):
                        session.delete(flow)
                session.delete(obj)
                session.flush()
                kind.delete_precommit(DriverContext(kind.name, obj, session))
                undo_uow.after_commit(lambda: self._safe_post(kind.delete_postcommit, kind, obj))

        uow.after_commit(post, undo)

    def _published(self, uow: UnitOfWork, kind: _Kind, row: Any) -> None:
        """After the precommit hook: the new resource's hosts get this transaction's revision
        (and are woken after the commit)."""
        self.changes.touch(uow, projection.hosts_of(uow.session, kind.name, row))

    @staticmethod
    def _safe_post(hook: Hook, kind: _Kind, row: Any) -> None:
        try:
            hook(DriverContext(kind.name, row))
        except Exception:  # noqa: BLE001 - delivery is level-triggered; the next change heals
            LOG.exception("%s failed for %s", getattr(hook, "__name__", hook), row.id)

    def _owned_port(self, uow: UnitOfWork, port_id: str, project: str) -> Port:
        port = PortRepository(uow.session).get(port_id)
        if port is None and self.port_miss is not None:
            port = self.port_miss(uow, port_id)
        if port is None:
            raise errors.PortNotFound(f"Port {port_id} could not be found")
        if port.project_id != project:
            raise errors.PortDoesNotBelongToTenant(
                f"Port {port_id} does not belong to project {project}"
            )
        return port

    # ---- tap services ---------------------------------------------------------------

    def create_tap_service(self, uow: UnitOfWork, ctx: Context, body: Any) -> TapService:
        attrs = validation.check_body(validation.TAP_SERVICE, body, resource="tap_service")
        project = ctx.authorize_create("tap_service", attrs, body)
        session = uow.session
        self.quotas.reserve(session, project, "tap_service")
        port = self._owned_port(uow, attrs["port_id"], project)
        repo = TapServiceRepository(session)
        if repo.active_for_port(port.id) is not None:
            raise errors.PortInUseAsTapServiceDestination(
                f"Port {port.id} is already the destination of a tap service"
            )
        row = TapService(
            id=str(uuid.uuid4()), project_id=project, name=attrs["name"],
            description=attrs["description"], port_id=port.id, status="DOWN", created_at=now(),
            **_limits(attrs, validation.LIMITS),
        )
        self._allocate_taas_id(repo, row)
        self.driver.create_tap_service_precommit(DriverContext("tap_service", row, session))
        self._published(uow, self._services, row)
        self._after_create(uow, self._services, row)
        return row

    def _allocate_taas_id(self, repo: TapServiceRepository, row: TapService) -> None:
        """First free id of the range. The unique constraint arbitrates concurrent creates:
        a loser's insert fails inside its savepoint and it tries the next id."""
        used = repo.used_taas_ids()
        for candidate in free_taas_ids(
            self.settings.vlan_range_start, self.settings.vlan_range_end, used
        ):
            row.taas_id = candidate
            if repo.insert_with_taas_id(row):
                return
        raise errors.TapServiceLimitReached(
            "Reached the maximum number of tap services "
            f"({self.settings.vlan_range_end - self.settings.vlan_range_start})"
        )

    def get_tap_service(self, session: Session, ctx: Context, id_: str) -> TapService:
        return get_visible(ctx, "tap_service", TapServiceRepository(session), id_,
                           errors.TapServiceNotFound, "Tap Service")

    def list_tap_services(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "tap_service", TapServiceRepository(session), q)

    def update_tap_service(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any) -> TapService:
        row = self.get_tap_service(uow.session, ctx, id_)
        return self._update(uow, ctx, self._services, row, validation.TAP_SERVICE, body)

    def _update(self, uow: UnitOfWork, ctx: Context, kind: _Kind, row: Any,
                spec: dict[str, validation.Attr], body: Any, touched: tuple[str, ...] = ()
                ) -> Any:
        """A PUT; the hosts holding the resource get a new revision when an attribute their
        switches apply changed (limits, snaplen, or ``touched``)."""
        applied = (*touched, *(k for k in (*validation.SNAPLEN, *validation.LIMITS)
                               if k in spec))
        before = {k: getattr(row, k) for k in applied}
        row = update_attrs(uow.session, ctx, row, spec, body, kind.name)
        if row.status != PENDING_DELETE and any(getattr(row, k) != v
                                                for k, v in before.items()):
            self.changes.touch(uow, projection.hosts_of(uow.session, kind.name, row))
        return row

    def delete_tap_service(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        row = self.get_tap_service(uow.session, ctx, id_)
        ctx.authorize_change("delete", "tap_service", owner_target(row.project_id))
        self._delete_tap_service(uow, row)

    def _delete_tap_service(self, uow: UnitOfWork, row: TapService) -> None:
        session = uow.session
        for flow in TapFlowRepository(session).of_service(row.id):
            self._delete_tap_flow(uow, flow)
        if row.status == PENDING_DELETE:
            return
        self._retire(uow, self._services, row, TapServiceRepository(session),
                     blocked=bool(TapFlowRepository(session).of_service(row.id)))

    def _retire(self, uow: UnitOfWork, kind: _Kind, row: Any, repo: Repository,
                blocked: bool = False) -> None:
        """Delete at once if no host holds it, else PENDING_DELETE until hosts confirm."""
        session = uow.session
        # Judged before this delete's own revision bump.
        pending = (blocked or AgentRepository(session).is_held(kind.name, row.id)
                   or lifecycle.may_be_installing(session, kind.name, row,
                                                  self.settings.agent_down_time))
        hosts = projection.hosts_of(session, kind.name, row)
        kind.delete_precommit(DriverContext(kind.name, row, session))
        revision = self.changes.touch(uow, hosts)
        if pending:
            row.status = PENDING_DELETE
            # Its hosts must report at least this revision (or stop holding it) before the
            # row goes; other hosts' revisions never matter.
            row.retired_revision = (revision if revision is not None
                                    else RevisionRepository(session).current())
            session.flush()
        else:
            repo.remove(row)
        uow.after_commit(lambda: self._safe_post(kind.delete_postcommit, kind, row))

    # ---- tap flows ------------------------------------------------------------------

    def create_tap_flow(self, uow: UnitOfWork, ctx: Context, body: Any) -> TapFlow:
        attrs = validation.check_body(validation.TAP_FLOW, body, resource="tap_flow")
        project = ctx.authorize_create("tap_flow", attrs, body)
        session = uow.session
        self.quotas.reserve(session, project, "tap_flow")
        service = TapServiceRepository(session).get(attrs["tap_service_id"])
        if service is None or service.status == PENDING_DELETE:
            raise errors.TapServiceNotFound(
                f"Tap Service {attrs['tap_service_id']} could not be found"
            )
        if service.project_id != project:
            raise errors.TapServiceNotBelongToTenant(
                f"Tap Service {service.id} does not belong to project {project}"
            )
        port = self._owned_port(uow, attrs["source_port"], project)
        if port.id == service.port_id:
            raise errors.InvalidInput(
                f"Port {port.id} is the destination of tap service {service.id}; it cannot also "
                "be a source of that service"
            )
        if TapFlowRepository(session).find_pair(port.id, service.id) is not None:
            raise errors.TapFlowAlreadyExists(
                f"Port {port.id} already feeds tap service {service.id}"
            )
        filter_id = attrs.get("tap_filter_id")
        if filter_id is not None:
            self._usable_filter(session, filter_id, project)
        row = TapFlow(
            id=str(uuid.uuid4()), project_id=project, name=attrs["name"],
            description=attrs["description"], tap_service_id=service.id, source_port=port.id,
            direction=attrs["direction"], vlan_filter=attrs.get("vlan_filter"),
            tap_filter_id=filter_id, status="DOWN", created_at=now(),
            **_limits(attrs, {**validation.SNAPLEN, **validation.LIMITS}),
        )
        TapFlowRepository(session).add(row)
        self.driver.create_tap_flow_precommit(DriverContext("tap_flow", row, session))
        self._published(uow, self._flows, row)
        self._after_create(uow, self._flows, row)
        return row

    def get_tap_flow(self, session: Session, ctx: Context, id_: str) -> TapFlow:
        return get_visible(ctx, "tap_flow", TapFlowRepository(session), id_,
                           errors.TapFlowNotFound, "Tap Flow")

    def list_tap_flows(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "tap_flow", TapFlowRepository(session), q)

    def update_tap_flow(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any) -> TapFlow:
        session = uow.session
        row = self.get_tap_flow(session, ctx, id_)
        before = row.tap_filter_id
        # A refusal below rolls the whole request back.
        row = self._update(uow, ctx, self._flows, row, validation.TAP_FLOW, body,
                           touched=("tap_filter_id",))
        if row.tap_filter_id != before and row.tap_filter_id is not None:
            self._usable_filter(session, row.tap_filter_id, row.project_id)
        return row

    @staticmethod
    def _usable_filter(session: Session, filter_id: str, project: str) -> None:
        flt = TapFilterRepository(session).get(filter_id)
        if flt is None or flt.project_id != project:
            # Another project's filter is not revealed: the same answer as a missing one.
            raise errors.TapFilterNotFound(
                f"Tap Filter {filter_id} could not be found in project {project}")

    def delete_tap_flow(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        row = self.get_tap_flow(uow.session, ctx, id_)
        ctx.authorize_change("delete", "tap_flow", owner_target(row.project_id))
        self._delete_tap_flow(uow, row)

    def _delete_tap_flow(self, uow: UnitOfWork, row: TapFlow) -> None:
        if row.status != PENDING_DELETE:
            self._retire(uow, self._flows, row, TapFlowRepository(uow.session))

    # ---- tap mirrors ----------------------------------------------------------------

    def create_tap_mirror(self, uow: UnitOfWork, ctx: Context, body: Any) -> TapMirror:
        attrs = validation.check_body(validation.TAP_MIRROR, body, resource="tap_mirror")
        project = ctx.authorize_create("tap_mirror", attrs, body)
        session = uow.session
        self.quotas.reserve(session, project, "tap_mirror")
        port = self._owned_port(uow, attrs["port_id"], project)
        address, forms = validation.address_forms(attrs["remote_ip"])
        lock_address(session, address)  # an agent registering this address waits, then sees us
        if AgentRepository(session).host_with_tunnel_ip(forms) is not None:
            # Copies would land in a hypervisor's own tunnel endpoint, not at a collector.
            raise errors.InvalidInput(
                f"'remote_ip' {attrs['remote_ip']} is the tunnel address of a hypervisor; a "
                "tap mirror needs the address of a remote collector")
        repo = TapMirrorRepository(session)
        tunnels = list(attrs["directions"].values())

        def conflict(ids: list[int]) -> errors.TapMirrorTunnelConflict:
            return errors.TapMirrorTunnelConflict(
                f"Tunnel id(s) {', '.join(map(str, sorted(ids)))} already used by a tap mirror"
            )

        if in_use := repo.tunnels_in_use(tunnels):
            raise conflict(in_use)
        row = TapMirror(
            id=str(uuid.uuid4()), project_id=project, name=attrs["name"],
            description=attrs["description"], port_id=port.id, directions=attrs["directions"],
            remote_ip=attrs["remote_ip"], mirror_type=attrs["mirror_type"], status="DOWN",
            created_at=now(), **_limits(attrs, {**validation.SNAPLEN, **validation.LIMITS}),
        )
        repo.add(row)
        if not repo.add_tunnels(row.id, tunnels):
            raise conflict(tunnels)
        self.driver.create_tap_mirror_precommit(DriverContext("tap_mirror", row, session))
        self._published(uow, self._mirrors, row)
        self._after_create(uow, self._mirrors, row)
        return row

    def get_tap_mirror(self, session: Session, ctx: Context, id_: str) -> TapMirror:
        return get_visible(ctx, "tap_mirror", TapMirrorRepository(session), id_,
                           errors.TapMirrorNotFound, "Tap Mirror")

    def list_tap_mirrors(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        return list_visible(ctx, "tap_mirror", TapMirrorRepository(session), q)

    def update_tap_mirror(self, uow: UnitOfWork, ctx: Context, id_: str, body: Any) -> TapMirror:
        row = self.get_tap_mirror(uow.session, ctx, id_)
        return self._update(uow, ctx, self._mirrors, row, validation.TAP_MIRROR, body)

    def delete_tap_mirror(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        row = self.get_tap_mirror(uow.session, ctx, id_)
        ctx.authorize_change("delete", "tap_mirror", owner_target(row.project_id))
        self._delete_tap_mirror(uow, row)

    def _delete_tap_mirror(self, uow: UnitOfWork, row: TapMirror) -> None:
        if row.status != PENDING_DELETE:
            self._retire(uow, self._mirrors, row, TapMirrorRepository(uow.session))

    # ---- cascade from the inventory -------------------------------------------------

    def delete_port_users(self, uow: UnitOfWork, port_id: str) -> None:
        """Delete every tap resource that names the port (before the port goes)."""
        session = uow.session
        for service in TapServiceRepository(session).using_port(port_id):
            self._delete_tap_service(uow, service)
        for flow in TapFlowRepository(session).with_source(port_id):
            self._delete_tap_flow(uow, flow)
        for mirror in TapMirrorRepository(session).using_port(port_id):
            self._delete_tap_mirror(uow, mirror)

