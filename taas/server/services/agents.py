"""The agent-facing API's rules: registration, port bindings, desired state, reports.

Each call costs O(what changed): a heartbeat is one UPDATE; a port set or report equal to the
one stored (same digest) is not even sent by the agent; a change bumps only the hosts it
concerns (services/projection.py), and only their long-polls answer.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from taas.common.desired_state import ContractError, HostReport, ports_digest
from taas.server.config import Settings
from taas.server.db.models import Agent, Port
from taas.server.db.repositories import (
    AgentRepository,
    ListQuery,
    PortRepository,
    RevisionRepository,
    TapMirrorRepository,
    TapServiceRepository,
    lock_address,
)
from taas.server.db.session import UnitOfWork
from taas.server.drivers.base import DriverContext, ServiceDriver
from taas.server.services import errors, lifecycle, projection, validation
from taas.server.services.context import Context
from taas.server.services.tap import now

LOG = logging.getLogger(__name__)
STATE_CACHE_SIZE = 20_000  # hosts whose last desired state this replica keeps


def _expect_dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"'{what}' must be a JSON object")
    return value


class Agents:
    def __init__(self, settings: Settings, driver: ServiceDriver) -> None:
        self.settings = settings
        self.driver = driver
        self.changes = projection.Changes(driver.notifier, driver.is_postgres)
        # host -> (revision, JSON answer): a host's state only changes with its revision, so
        # an unchanged one is served from here (long-polls that time out cost one SELECT).
        self._states: dict[str, tuple[int, bytes]] = {}
        self._states_lock = threading.Lock()
        # Hosts that beat since the last flush: one UPDATE a second for all of them, instead
        # of one write transaction per heartbeat (SQLite serialises writes and syncs each).
        self._beats: set[str] = set()
        self._beats_lock = threading.Lock()
        # Hosts with a long-poll waiting on this replica: an agent whose watch is connected is
        # alive (its client then skips most heartbeats; see docs/agent-api.md).
        self._watching: Counter[str] = Counter()

    def is_alive(self, agent: Agent) -> bool:
        return now() - agent.heartbeat_at <= timedelta(seconds=self.settings.agent_down_time)

    def _changed(self, uow: UnitOfWork, hosts: set[str], what: Any) -> None:
        """Give `hosts` a new revision (and wake them after the commit); driver hooks."""
        self.changes.touch(uow, hosts)
        self.driver.state_changed_precommit(DriverContext("agent", what, uow.session))
        uow.after_commit(lambda: self.driver.state_changed_postcommit(DriverContext("agent", what)))

    def _agent(self, session: Session, host: str) -> Agent:
        agent = AgentRepository(session).by_host(host)
        if agent is None:
            raise errors.AgentNotFound(f"No agent registered for host {host}; register first")
        return agent

    @staticmethod
    def authorize(ctx: Context, host: str) -> None:
        """The agent API for `host`: a service/admin credential, bound to `host` if bound."""
        validation.string(255)("host", host)
        ctx.require_agent(host)

    @staticmethod
    def _tunnel_ip(body: Any) -> str | None:
        attrs = _expect_dict(_expect_dict(body, "body").get("agent"), "agent")
        unknown = set(attrs) - {"tunnel_ip"}
        if unknown:
            raise errors.InvalidInput(f"Unrecognized attribute(s) {sorted(unknown)} for agent")
        tunnel_ip = attrs.get("tunnel_ip")
        if tunnel_ip is not None:
            tunnel_ip = validation.ip_address("tunnel_ip", tunnel_ip)
        return tunnel_ip  # type: ignore[no-any-return]

    @staticmethod
    def _check_tunnel_ip(session: Session, tunnel_ip: str) -> None:
        """409 if a tap mirror sends to this address: the copies of its tenant would land
        in this hypervisor's tunnel endpoint (the mirror's create refuses the reverse)."""
        address, forms = validation.address_forms(tunnel_ip)
        lock_address(session, address)  # a tap mirror created meanwhile waits, then sees us
        if TapMirrorRepository(session).remote_ip_in(forms):
            raise errors.TunnelIpInUse(
                f"tunnel_ip {tunnel_ip} is the remote_ip of a tap mirror: its copies would "
                "land in this hypervisor; use another tunnel address or delete the mirror")

    def heartbeat(self, session: Session, ctx: Context, host: str, body: Any) -> Any:
        """A registered agent with the same tunnel IP (as a row: its columns by name): nothing
        changes but its liveness, which is queued for the next flush_beats (within seconds).
        None: a real (re)registration, for register()."""
        self.authorize(ctx, host)
        tunnel_ip = self._tunnel_ip(body)
        agent = AgentRepository(session).row_of(host)
        if agent is None or agent.tunnel_ip != tunnel_ip:
            return None
        with self._beats_lock:
            self._beats.add(host)
        return agent

    def beat(self, host: str) -> None:
        """Another call of the host's agent shows it alive (stored at the next flush)."""
        with self._beats_lock:
            self._beats.add(host)

    def watch_started(self, host: str) -> None:
        with self._beats_lock:
            self._watching[host] += 1

    def watch_ended(self, host: str) -> None:
        with self._beats_lock:
            self._watching[host] -= 1
            if self._watching[host] <= 0:
                del self._watching[host]
            self._beats.add(host)  # it was alive until now

    def flush_beats(self, uow: UnitOfWork) -> int:
        """Store the queued heartbeats and those of the hosts whose long-poll is waiting here
        (one UPDATE); how many hosts."""
        with self._beats_lock:
            hosts, self._beats = self._beats | set(self._watching), set()
        AgentRepository(uow.session).heartbeat(hosts, now())
        return len(hosts)

    def register(self, uow: UnitOfWork, ctx: Context, host: str, body: Any) -> Agent:
        self.authorize(ctx, host)
        tunnel_ip = self._tunnel_ip(body)
        repo = AgentRepository(uow.session)
        agent = repo.by_host(host)
        stamp = now()
        if tunnel_ip is not None and (agent is None or agent.tunnel_ip != tunnel_ip):
            self._check_tunnel_ip(uow.session, tunnel_ip)
        if agent is None:
            agent = repo.add(Agent(id=str(uuid.uuid4()), host=host, tunnel_ip=tunnel_ip,
                                   heartbeat_at=stamp, created_at=stamp))
            self._changed(uow, projection.hosts_fed_by(uow.session, host), agent)
        elif agent.tunnel_ip != tunnel_ip:
            agent.heartbeat_at, agent.tunnel_ip = stamp, tunnel_ip
            uow.session.flush()
            self._changed(uow, projection.hosts_fed_by(uow.session, host), agent)
        elif agent.heartbeat_at != stamp:
            repo.heartbeat({host}, stamp)
            uow.session.expire(agent, ["heartbeat_at"])
        return agent

    def set_ports(
        self, uow: UnitOfWork, ctx: Context, host: str, body: Any
    ) -> tuple[list[Port], list[str], str | None]:
        """Bind the ports the agent sees to its host; unbind those it no longer sees.
        Returns the ports, the unknown ids, and the digest stored (None: not settled)."""
        self.authorize(ctx, host)
        session = uow.session
        agent = self._agent(session, host)
        items = _expect_dict(body, "body").get("ports")
        if not isinstance(items, list):
            raise errors.InvalidInput("'ports' must be a list")
        seen: list[str] = []
        for item in items:
            item = _expect_dict(item, "ports[]")
            port_id = item.get("port_id")
            if not isinstance(port_id, str) or not port_id or len(port_id) > 255:
                raise errors.InvalidInput("each port needs a 'port_id' string")
            seen.append(port_id)
        repo = PortRepository(session)
        known = repo.get_many(seen)
        unknown = sorted(set(seen) - set(known))
        previously = {p.id for p in repo.bound_to(host)}
        # A port bound to another host whose agent is alive stays there (that agent's last
        # ports report has it, else it would have unbound it): two hosts reporting one port
        # must not flip the binding on every heartbeat. It moves once the holder drops it or
        # its agent dies.
        agents = AgentRepository(session)
        others = {p.host for p in known.values() if p.host and p.host != host}
        holders = {h for h in others
                   if (a := agents.by_host(h)) is not None and self.is_alive(a)}
        to_bind = [pid for pid, p in known.items() if p.host != host and p.host not in holders]
        to_unbind = sorted(previously - set(known))
        if to_bind or to_unbind:
            moved = set(to_bind) | set(to_unbind)
            # The hosts concerned before and after: a resource leaving a host changes it too.
            hosts = projection.hosts_naming_ports(session, moved)
            losers = {known[p].host for p in to_bind} - {host, None}
            agents.unsettle_ports(losers)
            hosts |= losers  # woken: their answer says to send their port sets again
            repo.set_host(to_bind, host)
            repo.set_host(to_unbind, None)
            session.flush()
            session.expire_all()
            hosts |= projection.hosts_naming_ports(session, moved)
            lifecycle.refresh(session, self.settings.agent_down_time, port_ids=moved)
            self._changed(uow, hosts, {"host": host})
        ports = list(repo.get_many(known).values())
        # The digest tells the agent it may skip this call while its set stays the same; only
        # when the whole set is bound here (unknown ports or ports another host holds are
        # re-sent at each heartbeat: they may bind later).
        settled = not unknown and all(p.host == host for p in ports)
        agent = self._agent(session, host)
        agent.ports_digest = ports_digest(seen) if settled else None
        session.flush()
        return sorted(ports, key=lambda p: p.id), unknown, agent.ports_digest

    def revision(self, session: Session, ctx: Context, host: str) -> int:
        self.authorize(ctx, host)
        return RevisionRepository(session).of_host(host)

    def _state(self, session: Session, host: str, revision: int) -> bytes:
        """The host's desired state at `revision`, JSON-encoded; from the cache while its
        revision holds (a host's state only changes with its revision)."""
        with self._states_lock:
            cached = self._states.get(host)
        if cached is not None and cached[0] == revision:
            return cached[1]
        state = projection.desired_state(session, self.settings, host)
        encoded = json.dumps(state.to_dict(), separators=(",", ":")).encode()
        with self._states_lock:
            if len(self._states) >= STATE_CACHE_SIZE:
                self._states.pop(next(iter(self._states)))
            self._states[host] = (state.revision, encoded)
        return encoded

    def watch_answer(self, session: Session, host: str) -> tuple[int, bytes]:
        """The long-poll's answer, `{"desired_state", "ports_digest", "report_digest"}` as
        JSON, and the revision it carries: one SELECT while the host's state is unchanged.
        (The caller authorized the host.)"""
        revision, ports, report = RevisionRepository(session).watch_facts(host)
        body = b"".join((b'{"desired_state":', self._state(session, host, revision),
                         b',"ports_digest":', json.dumps(ports).encode(),
                         b',"report_digest":', json.dumps(report).encode(), b"}"))
        return revision, body

    def report(self, uow: UnitOfWork, ctx: Context, host: str, body: Any) -> dict[str, Any]:
        """Store what the host holds; statuses and pending deletions follow from it.

        taas_ids the server never gave this host (no tap service in its scope, not held by
        it before) are ignored and logged: a host cannot block ids of the rest of the cloud."""
        self.authorize(ctx, host)
        session = uow.session
        agent = self._agent(session, host)
        data = _expect_dict(_expect_dict(body, "body").get("report"), "report")
        if data.get("host", host) != host:
            raise errors.InvalidInput(f"report is for host {data.get('host')!r}, not {host!r}")
        try:
            report = HostReport.from_dict({"host": host, "revision": 0, **data})
        except ContractError as exc:
            raise errors.InvalidInput(f"Invalid report: {exc}") from None
        held = {(r.kind, r.id): (r.status, r.reason) for r in report.resources}
        repo = AgentRepository(session)
        before = repo.held_ids(host)
        ids = set(report.taas_ids)
        allowed = repo.held_taas_ids(host) | TapServiceRepository(session).taas_ids_near(host)
        if ids - allowed:
            LOG.warning("host %s reported taas_ids it was never given, ignored: %s",
                        host, sorted(ids - allowed))
            ids &= allowed
        repo.replace_report(host, [(k, r, s, why) for (k, r), (s, why) in held.items()], ids)
        agent.heartbeat_at = now()
        agent.reported_revision = report.revision
        agent.report_digest = report.digest()
        session.flush()
        # What the host held or holds, and what names its ports (pending deletions that waited
        # for this host to catch up).
        local = {p.id for p in PortRepository(session).bound_to(host)}
        lifecycle.refresh(session, self.settings.agent_down_time,
                          resource_ids=before | {r for _, r in held}, port_ids=local,
                          pending=True)
        return {"host": host, "revision": report.revision, "accepted": len(held),
                "taas_ids": sorted(ids)}

    # ---- admin view -----------------------------------------------------------------

    def list_agents(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        ctx.require("get_agent")
        return AgentRepository(session).list(q)

    def get_agent(self, session: Session, ctx: Context, id_: str) -> Agent:
        ctx.require("get_agent")
        agent = AgentRepository(session).get(id_)
        if agent is None:
            raise errors.AgentNotFound(f"Agent {id_} could not be found")
        return agent

    def delete_agent(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        """Forget a (dead) agent: its holdings, its port bindings, its row."""
        agent = self.get_agent(uow.session, ctx, id_)
        ctx.require("delete_agent")
        session = uow.session
        repo = AgentRepository(session)
        held = repo.held_ids(agent.host)
        ports = {p.id for p in PortRepository(session).bound_to(agent.host)}
        hosts = (projection.hosts_fed_by(session, agent.host)
                 | projection.hosts_naming_ports(session, ports))
        repo.forget_holdings(agent.host)
        PortRepository(session).clear_host(agent.host)
        repo.remove(agent)
        session.expire_all()
        hosts |= projection.hosts_naming_ports(session, ports)
        lifecycle.refresh(session, self.settings.agent_down_time, resource_ids=held,
                          port_ids=ports, pending=True)
        self._changed(uow, hosts, agent)
