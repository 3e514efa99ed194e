"""Who is calling. Two strategies (setting `auth_strategy`):

- token (default): X-Auth-Token -> project and roles, from a JSON tokens file; else 401.
- noauth: no token needed, any token ignored; identity from X-Project-Id / X-Roles when given
  (as Neutron's noauth context does), else admin of project "admin". Every caller is trusted:
  for trusted networks and labs only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from taas.server.config import ConfigError
from taas.server.services.context import Context
from taas.server.services.errors import InvalidInput, TaasError

ROLES = {"admin", "member", "reader", "service"}


class NotAuthenticated(TaasError):
    status, type = 401, "HTTPUnauthorized"


class TokenStore:
    def __init__(self, tokens: dict[str, Context]) -> None:
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: str | None) -> TokenStore:
        """Load `{"tokens": {"<token>": {"project_id": ..., "roles": [...]}}}`; an entry's
        optional "host" binds the token to that host's agent API."""
        if path is None:
            return cls({})
        try:
            data = json.loads(Path(path).read_text())
            tokens = {}
            for token, entry in data["tokens"].items():
                roles = frozenset(entry.get("roles", []))
                if not roles <= ROLES:
                    raise ConfigError(f"unknown role(s) {sorted(roles - ROLES)} in {path}")
                host = entry.get("host")  # a per-host agent credential
                if host is not None and (not isinstance(host, str) or not host):
                    raise ConfigError(f"'host' of a token must be a host name in {path}")
                tokens[token] = Context(project_id=str(entry.get("project_id", "")), roles=roles,
                                        host=host)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot load tokens file {path}: {exc!r}") from None
        return cls(tokens)

    def context(self, token: str | None) -> Context:
        if not token:
            raise NotAuthenticated("Authentication required: send an X-Auth-Token header")
        ctx = self._tokens.get(token)
        if ctx is None:
            raise NotAuthenticated("Invalid token")
        return ctx


NOAUTH_PROJECT = "admin"
NOAUTH_ADMIN = Context(project_id=NOAUTH_PROJECT, roles=frozenset({"admin"}))


def noauth_context(project: str | None, roles: str | None) -> Context:
    """The identity a noauth caller claims: X-Project-Id / X-Roles, else admin of "admin".

    A project without roles is a member of it; roles without a project act in "admin".
    Roles this server does not know (Keystone's `_member_`, custom ones) are ignored."""
    project = (project or "").strip()
    if len(project) > 255:
        raise InvalidInput("X-Project-Id is longer than 255 characters")
    if roles is None or not roles.strip():
        if not project:
            return NOAUTH_ADMIN
        return Context(project_id=project, roles=frozenset({"member"}))
    claimed = {r.strip().lower() for r in roles.split(",")}
    return Context(project_id=project or NOAUTH_PROJECT, roles=frozenset(claimed & ROLES))


def request_context(request: Request) -> Context:
    """FastAPI dependency: the caller's context, or 401 (token strategy only)."""
    headers = request.headers
    if request.app.state.settings.auth_strategy == "noauth":
        return noauth_context(headers.get("x-project-id") or headers.get("x-tenant-id"),
                              headers.get("x-roles"))
    store: TokenStore = request.app.state.tokens
    return store.context(headers.get("x-auth-token"))


Caller = Annotated[Context, Depends(request_context)]
