"""The caller, and what the policy (taas/server/policy.py) lets it do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taas.server.policy import Policy, default_policy
from taas.server.services.errors import InvalidInput, NotAuthorized, PolicyNotAuthorized

# Keystone's default role implications (bootstrap creates them): a token carries the implied
# roles too. Identities from the tokens file or noauth headers get the same expansion.
IMPLIED_ROLES = {"admin": {"member", "reader"}, "member": {"reader"}}


def with_implied(roles: Iterable[str]) -> frozenset[str]:
    out = set(roles)
    for role in list(out):
        out |= IMPLIED_ROLES.get(role, set())
    return frozenset(out)


def owner_target(project_id: str, **extra: Any) -> dict[str, Any]:
    """A policy target owned by `project_id` (Neutron passes both names)."""
    return {"project_id": project_id, "tenant_id": project_id, **extra}


@dataclass(frozen=True)
class Context:
    project_id: str
    roles: frozenset[str]
    # The one host whose agent API this credential may use (a per-host agent credential);
    # None: any host (a cloud-wide service or admin credential, weaker: see docs/agent-api.md).
    host: str | None = None
    user_id: str = ""
    # The server's rules (an operator's policy file applied); None: the built-in defaults.
    policy: Policy | None = field(default=None, compare=False, repr=False)

    @property
    def creds(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "tenant_id": self.project_id,
                "user_id": self.user_id, "roles": sorted(with_implied(self.roles))}

    def allowed(self, rule: str, target: Mapping[str, Any]) -> bool:
        return (self.policy or default_policy()).check(rule, target, self.creds)

    def authorize(self, rule: str, target: Mapping[str, Any]) -> None:
        if not self.allowed(rule, target):
            raise PolicyNotAuthorized(f"rule:{rule} is disallowed by policy")

    @property
    def is_admin(self) -> bool:
        """Sees every project's resources (policy rule context_is_admin)."""
        return self.allowed("context_is_admin", owner_target(self.project_id))

    def require_read(self, kind: str) -> None:
        """May read `kind` at all (in its own project): else 403, before any lookup."""
        self.authorize(f"get_{kind}", owner_target(self.project_id))

    def require(self, rule: str) -> None:
        """A rule with no owner (agents, admin-only calls) for the caller's own project."""
        self.authorize(rule, owner_target(self.project_id))

    def require_agent(self, host: str | None = None) -> None:
        """The agent API (of `host`, when given): the taas_agent rule (a service or admin
        role), and a credential bound to a host acts for that host only."""
        if not self.allowed("taas_agent", owner_target(self.project_id)):
            raise NotAuthorized("The agent API needs the service or admin role")
        if host is not None and self.host is not None and host != self.host:
            raise NotAuthorized(f"This credential is bound to another host than {host}")

    def sees(self, kind: str, project_id: str) -> bool:
        """Whether a `kind` of `project_id` exists for this caller (else 404)."""
        return self.allowed(f"get_{kind}", owner_target(project_id))

    def authorize_change(self, action: str, kind: str, target: Mapping[str, Any],
                         attributes: Iterable[str] = ()) -> None:
        """`<action>_<kind>` on the target, then the rule of every attribute that has one."""
        policy = self.policy or default_policy()
        self.authorize(f"{action}_{kind}", target)
        for rule in policy.attribute_rules(f"{action}_{kind}", attributes):
            self.authorize(rule, target)

    def target_project(self, body: Mapping[str, Any], default: str | None = None) -> str:
        """The project a create acts for: the one named in the body, else `default` (the
        caller's project unless given); the create rule then decides whether it may."""
        named = {body.get(k) for k in ("tenant_id", "project_id") if body.get(k) is not None}
        if len(named) > 1:
            raise InvalidInput("tenant_id and project_id differ")
        if not named:
            return default if default is not None else self.project_id
        return str(named.pop())

    def authorize_create(self, kind: str, attrs: Mapping[str, Any], given: Any,
                         default: str | None = None, **extra: Any) -> str:
        """The project of a new `kind` (validated `attrs`; `given`: the request's own body,
        whose attributes have rules), after the create rules allowed it."""
        project = self.target_project(attrs, default)
        named = given.keys() if isinstance(given, Mapping) else ()
        self.authorize_change("create", kind, owner_target(project, **extra), named)
        return project
