"""The agent-facing API's rules: registration, port bindings, desired state, reports."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from taas.common.desired_state import DesiredState
from taas.server.config import Settings
from taas.server.db.models import Agent, Port
from taas.server.db.repositories import AgentRepository, ListQuery, PortRepository
from taas.server.db.session import UnitOfWork
from taas.server.drivers.base import DriverContext, ServiceDriver
from taas.server.services import errors, lifecycle, validation
from taas.server.services.context import Context
from taas.server.services.tap import now

KINDS = ("tap_service", "tap_flow", "tap_mirror")


def _expect_dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"'{what}' must be a JSON object")
    return value


class Agents:
    def __init__(self, settings: Settings, driver: ServiceDriver) -> None:
        self.settings = settings
        self.driver = driver

    def is_alive(self, agent: Agent) -> bool:
        return now() - agent.heartbeat_at <= timedelta(seconds=self.settings.agent_down_time)

    def _changed(self, uow: UnitOfWork, row: Any) -> None:
        self.driver.state_changed_precommit(DriverContext("agent", row, uow.session))
        uow.after_commit(lambda: self.driver.state_changed_postcommit(DriverContext("agent", row)))

    def _agent(self, session: Session, host: str) -> Agent:
        agent = AgentRepository(session).by_host(host)
        if agent is None:
            raise errors.AgentNotFound(f"No agent registered for host {host}; register first")
        return agent

    @staticmethod
    def _host(host: str) -> str:
        return validation.string(255)("host", host)

    def register(self, uow: UnitOfWork, ctx: Context, host: str, body: Any) -> Agent:
        ctx.require_agent()
        self._host(host)
        attrs = _expect_dict(_expect_dict(body, "body").get("agent"), "agent")
        unknown = set(attrs) - {"tunnel_ip"}
        if unknown:
            raise errors.InvalidInput(f"Unrecognized attribute(s) {sorted(unknown)} for agent")
        tunnel_ip = attrs.get("tunnel_ip")
        if tunnel_ip is not None:
            tunnel_ip = validation.ip_address("tunnel_ip", tunnel_ip)
        repo = AgentRepository(uow.session)
        agent = repo.by_host(host)
        stamp = now()
        if agent is None:
            agent = repo.add(Agent(id=str(uuid.uuid4()), host=host, tunnel_ip=tunnel_ip,
                                   heartbeat_at=stamp, created_at=stamp))
            self._changed(uow, agent)
        else:
            agent.heartbeat_at = stamp
            if agent.tunnel_ip != tunnel_ip:
                agent.tunnel_ip = tunnel_ip
                self._changed(uow, agent)
            uow.session.flush()
        return agent

    def set_ports(
        self, uow: UnitOfWork, ctx: Context, host: str, body: Any
    ) -> tuple[list[Port], list[str]]:
        """Bind the ports the agent sees to its host; unbind those it no longer sees."""
        ctx.require_agent()
        session = uow.session
        self._agent(session, host)
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
            repo.set_host(to_bind, host)
            repo.set_host(to_unbind, None)
            session.flush()
            session.expire_all()
            lifecycle.refresh(session, self.settings.agent_down_time,
                              port_ids=set(to_bind) | set(to_unbind))
            self._changed(uow, {"host": host})
        ports = list(repo.get_many(known).values())
        return sorted(ports, key=lambda p: p.id), unknown

    def desired_state(self, session: Session, ctx: Context, host: str) -> DesiredState:
        ctx.require_agent()
        self._host(host)
        return self.driver.desired_state(session, host)

    def report(self, uow: UnitOfWork, ctx: Context, host: str, body: Any) -> dict[str, Any]:
        """Store what the host holds; statuses and pending deletions follow from it."""
        ctx.require_agent()
        session = uow.session
        agent = self._agent(session, host)
        data = _expect_dict(_expect_dict(body, "body").get("report"), "report")
        if data.get("host", host) != host:
            raise errors.InvalidInput(f"report is for host {data.get('host')!r}, not {host!r}")
        revision = validation.integer(0, 2**62)("revision", data.get("revision", 0))
        resources = data.get("resources", [])
        taas_ids = data.get("taas_ids", [])
        if not isinstance(resources, list) or not isinstance(taas_ids, list):
            raise errors.InvalidInput("'resources' and 'taas_ids' must be lists")
        held: dict[tuple[str, str], tuple[str, str | None]] = {}
        for item in resources:
            item = _expect_dict(item, "resources[]")
            kind = validation.one_of(*KINDS)("kind", item.get("kind"))
            rid = validation.string(36)("id", item.get("id"))
            status = validation.one_of("ACTIVE", "ERROR")("status", item.get("status"))
            reason = item.get("reason")
            if reason is not None:
                reason = validation.string(1024)("reason", reason)
            held[(kind, rid)] = (status, reason)
        ids = {validation.integer(0, 4095)("taas_ids[]", t) for t in taas_ids}
        repo = AgentRepository(session)
        before = repo.held_ids(host)
        repo.replace_report(host, [(k, r, s, why) for (k, r), (s, why) in held.items()], ids)
        agent.heartbeat_at = now()
        agent.reported_revision = revision
        session.flush()
        # What the host held or holds, and what names its ports (pending deletions that waited
        # for this host to catch up).
        local = {p.id for p in PortRepository(session).bound_to(host)}
        lifecycle.refresh(session, self.settings.agent_down_time,
                          resource_ids=before | {r for _, r in held}, port_ids=local,
                          pending=True)
        return {"host": host, "revision": revision, "accepted": len(held),
                "taas_ids": sorted(ids)}

    # ---- admin view -----------------------------------------------------------------

    def list_agents(self, session: Session, ctx: Context, q: ListQuery):  # type: ignore[no-untyped-def]
        ctx.require_admin()
        return AgentRepository(session).list(q)

    def get_agent(self, session: Session, ctx: Context, id_: str) -> Agent:
        ctx.require_admin()
        agent = AgentRepository(session).get(id_)
        if agent is None:
            raise errors.AgentNotFound(f"Agent {id_} could not be found")
        return agent

    def delete_agent(self, uow: UnitOfWork, ctx: Context, id_: str) -> None:
        """Forget a (dead) agent: its holdings, its port bindings, its row."""
        agent = self.get_agent(uow.session, ctx, id_)
        repo = AgentRepository(uow.session)
        held = repo.held_ids(agent.host)
        ports = {p.id for p in PortRepository(uow.session).bound_to(agent.host)}
        repo.forget_holdings(agent.host)
        PortRepository(uow.session).clear_host(agent.host)
        repo.remove(agent)
        uow.session.expire_all()
        lifecycle.refresh(uow.session, self.settings.agent_down_time, resource_ids=held,
                          port_ids=ports, pending=True)
        self._changed(uow, agent)

