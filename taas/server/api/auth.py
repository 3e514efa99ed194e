"""Token auth: X-Auth-Token -> project and roles, from a JSON tokens file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from taas.server.config import ConfigError
from taas.server.services.context import Context
from taas.server.services.errors import TaasError

ROLES = {"admin", "member", "reader", "service"}


class NotAuthenticated(TaasError):
    status, type = 401, "HTTPUnauthorized"


class TokenStore:
    def __init__(self, tokens: dict[str, Context]) -> None:
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: str | None) -> TokenStore:
        """Load `{"tokens": {"<token>": {"project_id": ..., "roles": [...]}}}`."""
        if path is None:
            return cls({})
        try:
            data = json.loads(Path(path).read_text())
            tokens = {}
            for token, entry in data["tokens"].items():
                roles = frozenset(entry.get("roles", []))
                if not roles <= ROLES:
                    raise ConfigError(f"unknown role(s) {sorted(roles - ROLES)} in {path}")
                tokens[token] = Context(project_id=str(entry.get("project_id", "")), roles=roles)
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


def request_context(request: Request) -> Context:
    """FastAPI dependency: the caller's context, or 401."""
    store: TokenStore = request.app.state.tokens
    return store.context(request.headers.get("x-auth-token"))


Caller = Annotated[Context, Depends(request_context)]
