"""neutron-server's API as the port backend reads it: a keystoneauth1 session.

Credentials, as Nova's [neutron] section has them (settings neutron_*):

- a Keystone user (`neutron_auth_url`, `neutron_username`, `neutron_password`, project and
  domains): keystoneauth1's password plugin logs in, and its session renews the token before it
  expires; a token refused by Neutron (401: revoked) is dropped and the call made once more
  with a new one. Without `neutron_url` the endpoint comes from the Keystone catalog (service
  type `network`, `neutron_interface`, `neutron_region_name`);
- a static token (`neutron_token`, with `neutron_url`);
- nothing: Neutron's noauth.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from keystoneauth1 import adapter, session
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.identity import v3

from taas.server.api.keystone import identity_url
from taas.server.config import Settings

LOG = logging.getLogger(__name__)


class NeutronUnavailable(RuntimeError):
    """neutron-server (or Keystone, for its endpoint or a token) could not be reached."""


def _auth(settings: Settings) -> Any:
    if settings.neutron_username:
        assert settings.neutron_auth_url
        return v3.Password(
            auth_url=identity_url(settings.neutron_auth_url),
            username=settings.neutron_username, password=settings.neutron_password,
            project_name=settings.neutron_project_name,
            user_domain_name=settings.neutron_user_domain_name,
            project_domain_name=settings.neutron_project_domain_name)
    if settings.neutron_token:
        from keystoneauth1 import token_endpoint

        return token_endpoint.Token(settings.neutron_url, settings.neutron_token)
    return None


class NeutronClient:
    """GETs on neutron-server with the configured credentials (thread-safe: requests'
    session and keystoneauth's plugin lock are)."""

    def __init__(self, settings: Settings) -> None:
        self.relogin = bool(settings.neutron_username)
        self.session = session.Session(auth=_auth(settings), timeout=settings.neutron_timeout)
        interfaces = [i.strip() for i in settings.neutron_interface.split(",") if i.strip()]
        self.api = adapter.Adapter(
            self.session, service_type="network", interface=interfaces,
            region_name=settings.neutron_region_name,
            endpoint_override=settings.neutron_url.rstrip("/") if settings.neutron_url else None)

    def get(self, path: str, timeout: float | None = None, **params: Any) -> requests.Response:
        """GET `path` (e.g. /v2.0/ports) with query `params`; any HTTP status is returned."""
        kw: dict[str, Any] = {"params": params, "raise_exc": False}
        if timeout is not None:
            kw["timeout"] = timeout
        try:
            r = self.api.get(path, **kw)
            if r.status_code == 401 and self.relogin:
                # Our token was revoked (or Neutron's cache disagrees): log in again, once.
                LOG.info("neutron-server refused our token: logging in to Keystone again")
                self.session.invalidate()
                r = self.api.get(path, **kw)
        except ks_exc.ClientException as exc:
            raise NeutronUnavailable(f"neutron-server: {exc}") from exc
        return r

    def close(self) -> None:
        self.session.session.close()
