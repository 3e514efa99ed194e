"""Who is calling. Three strategies (setting `auth_strategy`):

- token (default): X-Auth-Token -> project and roles, from a JSON tokens file; else 401.
- keystone: X-Auth-Token validated by Keystone v3 (taas/server/api/keystone.py); else 401.
- noauth: no token needed, any token ignored; identity from X-Project-Id / X-Roles when given
  (as Neutron's noauth context does), else admin of project "admin". Every caller is trusted:
  for trusted networks and labs only.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Protocol

from fastapi import Depends, Request

from taas.server.config import ConfigError, Settings
from taas.server.services.context import Context
from taas.server.services.errors import InvalidInput, TaasError

ROLES = {"admin", "member", "reader", "service"}


class NotAuthenticated(TaasError):
    status, type = 401, "HTTPUnauthorized"


class Authenticator(Protocol):
    def context(self, token: str | None) -> Context: ...


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


def build_authenticator(settings: Settings, tokens: TokenStore | None) -> Authenticator:
    """What turns an X-Auth-Token into a Context (noauth reads headers instead; none then)."""
    if settings.auth_strategy == "keystone":
        from taas.server.api.keystone import KeystoneAuth

        return KeystoneAuth(settings)
    # noauth trusts every caller: a tokens file, if any, is not read.
    return tokens or TokenStore.from_file(
        settings.tokens_file if settings.auth_strategy == "token" else None)


def request_context(request: Request) -> Context:
    """FastAPI dependency: the caller's context (with the server's policy), or 401."""
    headers = request.headers
    state = request.app.state
    if state.settings.auth_strategy == "noauth":
        ctx = noauth_context(headers.get("x-project-id") or headers.get("x-tenant-id"),
                             headers.get("x-roles"))
    else:
        authenticator: Authenticator = state.authenticator
        ctx = authenticator.context(headers.get("x-auth-token"))
    return replace(ctx, policy=state.policy)


Caller = Annotated[Context, Depends(request_context)]
