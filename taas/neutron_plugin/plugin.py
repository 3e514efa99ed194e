"""TaasProxyPlugin: neutron-server's /v2.0/taas/... handed to taas-server, nothing else.

neutron.conf:
    [DEFAULT]
    service_plugins = ...,taas.neutron_plugin.plugin.TaasProxyPlugin
    api_extensions_path = <this package>/extensions
    [taas_server]
    url = http://taas-server:9697
    # token = ...   only for a taas-server that takes no Keystone tokens (see below)

Neutron's API layer validates the body against the extension's attributes and applies Neutron's
policy; the plugin then calls taas-server with the caller's identity: the caller's own Keystone
token when there is one (`X-Auth-Token`), else (Neutron with auth_strategy = noauth) the
caller's project and roles as `X-Project-Id`/`X-Roles` for a noauth taas-server, or with
`[taas_server] token` for a token one. taas-server applies its own rules; its errors come back
with their HTTP status and Neutron error type and message (TapServiceNotFound stays
TapServiceNotFound); an unreachable taas-server is a 503 (`TaasServerUnavailable`), never a 500
or a hang. No TaaS rule lives here.

When Neutron deletes a port, the plugin asks taas-server to re-read that port at once
(`POST /v2.0/ports/<id>/sync`, with the deleting caller's identity): its tap resources are then
gone before Neutron answers the DELETE, as the original plugin's in-transaction cascade had
them (clients and tempest rely on it). Should that call fail, Neutron's notification does the
same a moment later; the port's deletion never waits longer than `port_sync_timeout`.
"""

from __future__ import annotations

from typing import Any

import requests
from neutron_lib import exceptions as nexc
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.services import base as service_base
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt("url", default="http://127.0.0.1:9697", help="taas-server base URL"),
    cfg.StrOpt("token", secret=True, default="",
               help="token for taas-server when the caller has none (noauth Neutron)"),
    cfg.FloatOpt("connect_timeout", default=3.0, help="seconds to connect to taas-server"),
    cfg.FloatOpt("timeout", default=30.0, help="seconds to wait for taas-server's answer"),
    cfg.FloatOpt("port_sync_timeout", default=10.0,
                 help="seconds a port deletion waits for taas-server to drop its tap resources"),
]
cfg.CONF.register_opts(OPTS, "taas_server")

# HTTP status of a taas-server error -> the neutron-lib class Neutron renders with that status.
_BASES: dict[int, type[nexc.NeutronException]] = {
    400: nexc.BadRequest, 401: nexc.NotAuthorized, 403: nexc.NotAuthorized,
    404: nexc.NotFound, 409: nexc.Conflict, 413: nexc.BadRequest, 503: nexc.ServiceUnavailable,
}
_CLASSES: dict[tuple[str, int], type[nexc.NeutronException]] = {}


class TaasServerUnavailable(nexc.ServiceUnavailable):
    message = "The Tap-as-a-Service backend is unavailable, retry later."


def _error(status: int, body: Any) -> nexc.NeutronException:
    """taas-server's error as a Neutron exception of the same type name and status."""
    err = body.get("NeutronError", {}) if isinstance(body, dict) else {}
    name = str(err.get("type") or "TaasError")
    if not name.isidentifier():
        name = "TaasError"
    base = _BASES.get(status, nexc.BadRequest if 400 <= status < 500 else None)
    if base is None:
        return TaasServerUnavailable()
    cls = _CLASSES.get((name, status))
    if cls is None:
        cls = type(name, (base,), {"message": "%(msg)s"})
        _CLASSES[(name, status)] = cls
    return cls(msg=str(err.get("message") or "Tap-as-a-Service request failed"))


class TaasProxyPlugin(service_base.ServicePluginBase):
    supported_extension_aliases = ["taas", "taas-vlan-filter", "tap-mirror", "taas-tap-filter",
                                   "taas-limits"]
    path_prefix = "/taas"

    def __init__(self) -> None:
        super().__init__()
        self.http = requests.Session()
        registry.subscribe(self._port_deleted, resources.PORT, events.AFTER_DELETE)

    def _port_deleted(self, resource: Any, event: Any, trigger: Any, payload: Any = None) -> None:
        """After Neutron committed a port's deletion: taas-server re-reads the port (now gone),
        which deletes the tap resources naming it."""
        conf = cfg.CONF.taas_server
        port_id = getattr(payload, "resource_id", None)
        if not port_id:
            return
        url = f"{conf.url.rstrip('/')}/v2.0/ports/{port_id}/sync"
        try:
            r = self.http.post(url, headers=self._headers(payload.context),
                               timeout=(conf.connect_timeout, conf.port_sync_timeout))
            if r.status_code >= 400:
                LOG.warning("taas-server did not sync deleted port %s: %s", port_id,
                            r.status_code)
        except Exception as exc:  # noqa: BLE001 - the notification will do it
            LOG.warning("taas-server did not sync deleted port %s: %s", port_id, exc)

    def get_plugin_type(self) -> str:
        return "TAAS"

    def get_plugin_description(self) -> str:
        return "Tap-as-a-Service: forwards to taas-server"

    # ---- transport ---------------------------------------------------------------------------
    def _headers(self, context: Any) -> dict[str, str]:
        h = {"Accept": "application/json"}
        token = getattr(context, "auth_token", None) or cfg.CONF.taas_server.token
        if token:
            h["X-Auth-Token"] = token
        # The identity Neutron established; a taas-server validating tokens ignores these.
        if getattr(context, "project_id", None):
            h["X-Project-Id"] = context.project_id
        roles = list(getattr(context, "roles", None) or [])
        if getattr(context, "is_admin", False) and "admin" not in roles:
            roles.append("admin")
        if roles:
            h["X-Roles"] = ",".join(roles)
        return h

    def _call(self, context: Any, method: str, path: str, body: Any = None,
              params: Any = None) -> Any:
        url = cfg.CONF.taas_server.url.rstrip("/") + "/v2.0/taas/" + path
        conf = cfg.CONF.taas_server
        try:
            r = self.http.request(method, url, json=body, params=params,
                                  headers=self._headers(context),
                                  timeout=(conf.connect_timeout, conf.timeout))
        except requests.RequestException as exc:
            LOG.warning("taas-server %s %s failed: %s", method, url, exc)
            raise TaasServerUnavailable() from None
        if r.status_code >= 400:
            try:
                data = r.json()
            except ValueError:
                data = None
            raise _error(r.status_code, data)
        return r.json() if r.content else None

    # ---- one resource's five calls -----------------------------------------------------------
    def _create(self, context: Any, singular: str, plural: str, body: dict) -> dict:
        return self._call(context, "POST", plural, {singular: body[singular]})[singular]

    def _get(self, context: Any, singular: str, plural: str, id_: str) -> dict:
        return self._call(context, "GET", f"{plural}/{id_}")[singular]

    def _list(self, context: Any, plural: str, filters: dict | None) -> list[dict]:
        params = [(k, v) for k, vals in (filters or {}).items()
                  for v in (vals if isinstance(vals, list) else [vals])]
        return list(self._call(context, "GET", plural, params=params)[plural])

    def _update(self, context: Any, singular: str, plural: str, id_: str, body: dict) -> dict:
        return self._call(context, "PUT", f"{plural}/{id_}", {singular: body[singular]})[singular]

    def _delete(self, context: Any, plural: str, id_: str) -> None:
        self._call(context, "DELETE", f"{plural}/{id_}")


def _bind(singular: str, plural: str) -> None:
    """Neutron calls create_<x>, get_<x>, get_<x>s, update_<x>, delete_<x> on the plugin."""
    # Neutron passes the request body as a keyword named after the resource:
    # create_x(ctx, x={"x": {...}}).
    def create(self: TaasProxyPlugin, context: Any, **kw: dict) -> dict:
        return self._create(context, singular, plural, kw[singular])

    def get(self: TaasProxyPlugin, context: Any, id: str, fields: Any = None) -> dict:  # noqa: A002
        return self._get(context, singular, plural, id)

    def get_all(self: TaasProxyPlugin, context: Any, filters: Any = None, fields: Any = None,
                sorts: Any = None, limit: Any = None, marker: Any = None,
                page_reverse: bool = False) -> list[dict]:
        return self._list(context, plural, filters)

    def update(self: TaasProxyPlugin, context: Any, id: str, **kw: dict) -> dict:  # noqa: A002
        return self._update(context, singular, plural, id, kw[singular])

    def delete(self: TaasProxyPlugin, context: Any, id: str) -> None:  # noqa: A002
        self._delete(context, plural, id)

    for name, fn in ((f"create_{singular}", create), (f"get_{singular}", get),
                     (f"get_{plural}", get_all), (f"update_{singular}", update),
                     (f"delete_{singular}", delete)):
        fn.__name__ = name
        setattr(TaasProxyPlugin, name, fn)


for _s, _p in (("tap_service", "tap_services"), ("tap_flow", "tap_flows"),
               ("tap_mirror", "tap_mirrors"), ("tap_filter", "tap_filters")):
    _bind(_s, _p)
