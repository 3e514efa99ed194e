"""Who is calling: project and roles, as resolved from the token by the API layer."""

from __future__ import annotations

from dataclasses import dataclass

from taas.server.services.errors import InvalidInput, NotAuthorized, PolicyNotAuthorized


@dataclass(frozen=True)
class Context:
    project_id: str
    roles: frozenset[str]
    # The one host whose agent API this credential may use (a per-host agent credential);
    # None: any host (a cloud-wide service or admin credential, weaker: see docs/agent-api.md).
    host: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        return self.is_admin or "member" in self.roles

    @property
    def can_read(self) -> bool:
        return self.is_admin or "member" in self.roles or "reader" in self.roles

    @property
    def is_agent(self) -> bool:
        return self.is_admin or "service" in self.roles

    def require_read(self) -> None:
        if not self.can_read:
            raise PolicyNotAuthorized("This token may not read tenant resources")

    def require_write(self) -> None:
        self.require_read()
        if not self.can_write:
            raise PolicyNotAuthorized("This token may only read (role reader)")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PolicyNotAuthorized("This operation needs the admin role")

    def require_agent(self, host: str | None = None) -> None:
        """The agent API (of `host`, when given): a service or admin role, and a credential
        bound to a host acts for that host only."""
        if not self.is_agent:
            raise NotAuthorized("The agent API needs the service or admin role")
        if host is not None and self.host is not None and host != self.host:
            raise NotAuthorized(f"This credential is bound to another host than {host}")

    def sees(self, project_id: str) -> bool:
        """Whether a resource of `project_id` exists for this caller (else 404)."""
        return self.is_admin or project_id == self.project_id

    def target_project(self, body: dict) -> str:
        """The project a create acts for: the caller's, or the one an admin names."""
        named = {body.get(k) for k in ("tenant_id", "project_id") if body.get(k) is not None}
        if len(named) > 1:
            raise InvalidInput("tenant_id and project_id differ")
        if not named:
            return self.project_id
        project = named.pop()
        if project != self.project_id and not self.is_admin:
            raise PolicyNotAuthorized("Only an admin may create resources for another project")
        return project
