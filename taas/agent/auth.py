"""Where the agent's X-Auth-Token comes from: a fixed token (tokens file, labs) or a Keystone
login (keystoneauth1), which fetches the token on first use and renews it before it expires."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3


class AuthError(Exception):
    """No token could be had (Keystone unreachable, refused the credentials, ...)."""


class TokenSource(Protocol):
    def token(self) -> str:
        """The token to send now."""
        ...

    def invalidate(self) -> bool:
        """Forget the token after the server refused it; True if a new one may differ."""
        ...


class StaticToken:
    """A token given once (`--token`): nothing to renew, so a 401 is final."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self) -> bool:
        return False


@dataclass(frozen=True)
class KeystoneCredentials:
    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"

    def __repr__(self) -> str:  # never log the password
        return (f"KeystoneCredentials(auth_url={self.auth_url!r}, username={self.username!r}, "
                f"project={self.project_name!r})")


class KeystoneToken:
    """A keystoneauth1 v3.Password plugin in a session. The plugin caches the token, fetches
    a new one when it is within 120 s of expiry (thread-safe: it holds a lock while it logs
    in) and forgets it on invalidate(), e.g. when taas-server says it was revoked."""

    def __init__(self, creds: KeystoneCredentials, timeout: float = 30.0) -> None:
        self._auth = v3.Password(
            auth_url=creds.auth_url, username=creds.username, password=creds.password,
            project_name=creds.project_name, user_domain_name=creds.user_domain_name,
            project_domain_name=creds.project_domain_name)
        self._session = ks_session.Session(auth=self._auth, timeout=timeout)

    def token(self) -> str:
        try:
            token = self._session.get_token()
        except ks_exceptions.ClientException as exc:
            # keystoneauth's messages name the URL and status, never the password.
            raise AuthError(f"Keystone login failed: {type(exc).__name__}: {exc}") from exc
        if not token:
            raise AuthError("Keystone login failed: no token")
        return token

    def invalidate(self) -> bool:
        return bool(self._auth.invalidate())
