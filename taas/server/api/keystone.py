"""auth_strategy keystone: X-Auth-Token validated by a Keystone v3 identity API.

keystoneauth1 holds the service credentials (a service user, or a static service token) and
re-authenticates when they expire; each caller's token is validated with
`GET /v3/auth/tokens` (X-Subject-Token), which is what keystonemiddleware does too. A valid
token's project, roles and user become the Context. Validations are cached for `ttl` seconds
(never past the token's own expiry): a token revoked in Keystone keeps working here at most
that long. Failed validations are not cached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from keystoneauth1.identity import v3

from taas.server.api.auth import NotAuthenticated
from taas.server.config import Settings
from taas.server.services.context import Context
from taas.server.services.errors import TaasError

LOG = logging.getLogger(__name__)
CACHE_SIZE = 10_000  # tokens; the oldest go first


class IdentityUnavailable(TaasError):
    status, type = 503, "HTTPServiceUnavailable"


def identity_url(auth_url: str) -> str:
    """The v3 root from an auth_url given with or without its version."""
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def context_of(token: dict[str, Any]) -> Context:
    """The caller a validated token body (`{"token": {...}}`'s inside) describes."""
    project = token.get("project") or {}
    return Context(
        project_id=str(project.get("id", "")),
        roles=frozenset(r["name"].lower() for r in token.get("roles", []) if "name" in r),
        user_id=str((token.get("user") or {}).get("id", "")),
    )


def _expiry(token: dict[str, Any]) -> float | None:
    """Seconds from now until the token expires (None: unknown)."""
    try:
        expires = datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
    except (KeyError, ValueError, AttributeError):
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return (expires - datetime.now(UTC)).total_seconds()


class KeystoneAuth:
    """Token -> Context through Keystone, with a TTL cache (thread-safe: FastAPI runs the
    dependency in its threadpool)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.keystone_auth_url
        self.url = identity_url(settings.keystone_auth_url)
        self.ttl = settings.keystone_cache_ttl
        self.timeout = settings.keystone_timeout
        auth: Any
        if settings.keystone_service_token:
            auth = token_endpoint.Token(self.url, settings.keystone_service_token)
        else:
            auth = v3.Password(
                auth_url=self.url, username=settings.keystone_username,
                password=settings.keystone_password,
                project_name=settings.keystone_project_name,
                user_domain_name=settings.keystone_user_domain_name,
                project_domain_name=settings.keystone_project_domain_name,
            )
        self.session = ks_session.Session(auth=auth, timeout=self.timeout)
        self._cache: OrderedDict[str, tuple[float, Context]] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, token: str | None) -> Context:
        if not token:
            raise NotAuthenticated("Authentication required: send an X-Auth-Token header")
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[0] > now:
                return hit[1]
        body = self.validate(token)
        ctx = context_of(body)
        lifetime = _expiry(body)
        keep = self.ttl if lifetime is None else min(self.ttl, lifetime)
        if keep > 0:
            with self._lock:
                self._cache[token] = (now + keep, ctx)
                self._cache.move_to_end(token)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return ctx

    def validate(self, token: str) -> dict[str, Any]:
        """Keystone's body of a valid token; 401 if Keystone says it is not valid."""
        resp = self._get(token)
        if resp.status_code == 401:
            # Our own credentials were refused (e.g. a token revoked early): fetch new ones.
            self.session.invalidate()
            resp = self._get(token)
        if resp.status_code == 404:
            raise NotAuthenticated("Invalid or expired token")
        if resp.status_code != 200:
            # 401/403 here means the service user may not validate tokens: an operator error.
            LOG.error("Keystone answered %d to a token validation: %s",
                      resp.status_code, resp.text[:500])
            raise IdentityUnavailable("The identity service could not validate the token")
        try:
            return resp.json()["token"]
        except (ValueError, KeyError):
            raise IdentityUnavailable("The identity service answered nonsense") from None

    def _get(self, token: str) -> Any:
        try:
            return self.session.get(
                # nocatalog: the service catalog is not needed and can be large.
                self.url + "/auth/tokens?nocatalog", headers={"X-Subject-Token": token},
                authenticated=True, raise_exc=False,
            )
        except ks_exc.ClientException as exc:
            LOG.warning("cannot reach Keystone at %s: %s", self.url, exc)
            raise IdentityUnavailable("The identity service is unavailable") from None
