"""A small HTTP client for taas-server's Neutron-compatible API.

Used by the `taas` command, the demo and the benchmarks: one place that knows the paths, the
request/response envelopes and how Neutron errors look.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:9696"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class ResourceKind:
    """Where a resource lives and how its bodies are keyed."""

    singular: str  # body key of one resource: {"tap_service": {...}}
    plural: str  # body key of a list: {"tap_services": [...]}
    path: str  # collection path
    label: str  # what users call it, for messages
    name_field: str = "name"  # the field that names it (agents are named by host)

    def item_path(self, resource_id: str) -> str:
        return f"{self.path}/{resource_id}"


KINDS: dict[str, ResourceKind] = {
    "tap_service": ResourceKind("tap_service", "tap_services", "/v2.0/taas/tap_services",
                                "tap service"),
    "tap_flow": ResourceKind("tap_flow", "tap_flows", "/v2.0/taas/tap_flows", "tap flow"),
    "tap_mirror": ResourceKind("tap_mirror", "tap_mirrors", "/v2.0/taas/tap_mirrors",
                               "tap mirror"),
    "tap_filter": ResourceKind("tap_filter", "tap_filters", "/v2.0/taas/tap_filters",
                               "tap filter"),
    "network": ResourceKind("network", "networks", "/v2.0/networks", "network"),
    "port": ResourceKind("port", "ports", "/v2.0/ports", "port"),
    "agent": ResourceKind("agent", "agents", "/v2.0/agents", "agent", name_field="host"),
}


class TaasError(Exception):
    """An API call failed; carries what the server said (or why it could not be reached)."""

    def __init__(self, message: str, status: int | None = None, error_type: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.detail = detail

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        suffix = f"HTTP {self.status}"
        if self.error_type:
            suffix += f" {self.error_type}"
        return f"{self.message} ({suffix})"


class ConnectionFailed(TaasError):
    """The server could not be reached at all."""


class NotFound(TaasError):
    """No resource with that name or id."""


class Ambiguous(TaasError):
    """A name matches several resources."""


def _error_from_response(resp: httpx.Response) -> TaasError:
    message = ""
    error_type = None
    detail = None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("NeutronError")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            error_type = err.get("type") or None
            detail = err.get("detail") or None
        elif "detail" in body:  # a framework-level error that bypassed the Neutron envelope
            message = str(body["detail"])
    if not message:
        message = resp.text.strip()[:200] or resp.reason_phrase or "request failed"
    cls = NotFound if resp.status_code == 404 else TaasError
    return cls(message, status=resp.status_code, error_type=error_type, detail=detail)


class Client:
    """Synchronous client: generic CRUD on the resource kinds of KINDS plus a few helpers."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("TAAS_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("TAAS_TOKEN")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["X-Auth-Token"] = self.token
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None,
                params: Any = None) -> Any:
        """One call; returns the decoded JSON body (None for 204) or raises TaasError."""
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.ConnectError as exc:
            raise ConnectionFailed(f"cannot connect to {self.url}: {_reason(exc)}") from None
        except httpx.TimeoutException:
            raise ConnectionFailed(f"no answer from {self.url} (timed out)") from None
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"request to {self.url} failed: {_reason(exc)}") from None
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise TaasError(f"the server answered {method} {path} with non-JSON content",
                            status=resp.status_code) from None

    # -- generic CRUD ----------------------------------------------------------------------

    def list(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
        k = KINDS[kind]
        params = [(key, v) for key, value in filters.items() if value is not None
                  for v in (value if isinstance(value, list | tuple) else [value])]
        body = self.request("GET", k.path, params=params or None)
        return list(body[k.plural])

    def get(self, kind: str, resource_id: str) -> dict[str, Any]:
        k = KINDS[kind]
        return dict(self.request("GET", k.item_path(resource_id))[k.singular])

    def create(self, kind: str, attrs: dict[str, Any]) -> dict[str, Any]:
        k = KINDS[kind]
        return dict(self.request("POST", k.path, json={k.singular: attrs})[k.singular])

    def bulk_create(self, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create many in one request (Neutron bulk: a list under the plural key)."""
        k = KINDS[kind]
        return list(self.request("POST", k.path, json={k.plural: items})[k.plural])

    def update(self, kind: str, resource_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
        k = KINDS[kind]
        body = self.request("PUT", k.item_path(resource_id), json={k.singular: attrs})
        return dict(body[k.singular])

    def delete(self, kind: str, resource_id: str) -> None:
        self.request("DELETE", KINDS[kind].item_path(resource_id))

    def find(self, kind: str, name_or_id: str) -> dict[str, Any]:
        """The one resource with this id or, failing that, this name."""
        k = KINDS[kind]
        if _UUID_RE.match(name_or_id):
            try:
                return self.get(kind, name_or_id)
            except NotFound:
                pass
        matches = self.list(kind, **{k.name_field: name_or_id})
        # Guard against a server that ignores the filter.
        matches = [m for m in matches if m.get(k.name_field) == name_or_id]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Ambiguous(f"more than one {k.label} is named {name_or_id!r}; use its id "
                            f"({', '.join(str(m.get('id')) for m in matches)})")
        if not _UUID_RE.match(name_or_id) and "/" not in name_or_id:
            # Ids need not be UUIDs (networks and ports may be created with a chosen id).
            try:
                return self.get(kind, name_or_id)
            except NotFound:
                pass
            except TaasError as exc:
                if exc.status != 400:
                    raise
        raise NotFound(f"no {k.label} with name or id {name_or_id!r}")

    def find_id(self, kind: str, name_or_id: str) -> str:
        return str(self.find(kind, name_or_id)["id"])

    # -- convenience for scripts (demo, benchmarks) ------------------------------------------

    def create_network(self, name: str, **attrs: Any) -> dict[str, Any]:
        return self.create("network", {"name": name, **attrs})

    def create_port(self, name: str, network_id: str, **attrs: Any) -> dict[str, Any]:
        return self.create("port", {"name": name, "network_id": network_id, **attrs})

    def create_tap_service(self, port_id: str, name: str = "", **attrs: Any) -> dict[str, Any]:
        return self.create("tap_service", {"port_id": port_id, "name": name, **attrs})

    def create_tap_flow(self, source_port: str, tap_service_id: str, direction: str,
                        **attrs: Any) -> dict[str, Any]:
        return self.create("tap_flow", {"source_port": source_port,
                                        "tap_service_id": tap_service_id,
                                        "direction": direction, **attrs})

    def create_tap_mirror(self, port_id: str, directions: dict[str, int], remote_ip: str,
                          mirror_type: str, **attrs: Any) -> dict[str, Any]:
        return self.create("tap_mirror", {"port_id": port_id, "directions": directions,
                                          "remote_ip": remote_ip, "mirror_type": mirror_type,
                                          **attrs})


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    # httpx wraps OS errors as "[Errno 111] Connection refused": keep the words.
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)
