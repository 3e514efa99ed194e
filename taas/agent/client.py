"""HTTP client of the agent-facing API of taas-server (docs/agent-api.md)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from taas.agent.auth import AuthError, StaticToken, TokenSource
from taas.agent.ports import LocalPort
from taas.common.desired_state import CountersReport, DesiredState, HostReport, ports_digest

LOG = logging.getLogger(__name__)
# Retries back off up to this (exponential with jitter, agent/schedule.py): after an outage
# a thousand agents must not come back in lockstep and keep an overloaded server down.
MAX_BACKOFF = 30.0
# Seconds between heartbeats while a long-poll keeps the agent alive (the server then knows it
# alive anyway): what this heartbeat still does is re-register an agent whose row an admin
# deleted, and refresh what the register answer carries (digests also come with every
# long-poll answer; a tunnel IP change is sent at once).
FULL_HEARTBEAT = 120.0


class ServerError(Exception):
    """The server answered, but with an error (or could not be reached)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServerClient:
    """Thread-safe thin wrapper around the four agent calls.

    Each call raises ServerError on any failure; retry policy belongs to the caller. The port
    set and the report are not sent again while the server's stored digest of them (learnt
    from each heartbeat answer) equals theirs: an idle agent costs one cheap call per
    heartbeat. A server that lost them (or an older one, without digests) gets them in full.
    """

    def __init__(self, base_url: str, token: str | TokenSource, host: str,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host
        self.timeout = timeout
        # A str is a fixed token; a KeystoneToken logs in and renews (taas/agent/auth.py).
        self._auth: TokenSource = StaticToken(token) if isinstance(token, str) else token
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Accept": "application/json"}, timeout=timeout)
        # The long-poll has its own connection (a pending watch never delays heartbeats or
        # reports), on http.client so that close() can abort it at once: a watch left
        # hanging would hold the server's graceful shutdown for up to its timeout.
        self._url = urlsplit(self.base_url)
        self._watch_lock = threading.Lock()
        self._watch_conn: http.client.HTTPConnection | None = None
        self._closed = False
        # What the server says it holds for this host (None: unknown, send in full).
        self._ports_digest: str | None = None
        self._report_digest: str | None = None
        self.skipped = 0  # calls saved by the digests (for tests and the benchmark)
        # While a long-poll waits, a server that says so (watch_keeps_alive) counts the agent
        # alive: heartbeats are then sent only every FULL_HEARTBEAT seconds.
        self._agent: dict[str, Any] | None = None
        self._beat_at = 0.0
        self._watching = False

    def close(self) -> None:
        self._http.close()
        with self._watch_lock:
            self._closed = True
            conn, self._watch_conn = self._watch_conn, None
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _call(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                resp = client.request(
                    method, path, json=json, params=params, timeout=timeout or self.timeout,
                    headers={"X-Auth-Token": self._token()})
            except httpx.HTTPError as exc:
                raise ServerError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            if not self._retry_after_401(resp.status_code, attempt):
                break
        if resp.status_code >= 400:
            detail = resp.text[:300]
            try:
                detail = resp.json()["NeutronError"]["message"]
            except Exception:  # noqa: BLE001 - any non-Neutron body: keep the raw text
                pass
            raise ServerError(f"{method} {path}: HTTP {resp.status_code}: {detail}",
                              resp.status_code)
        try:
            body = resp.json()
        except ValueError as exc:
            raise ServerError(f"{method} {path}: invalid JSON answer") from exc
        if not isinstance(body, dict):
            raise ServerError(f"{method} {path}: unexpected answer {body!r:.200}")
        return body

    def _token(self) -> str:
        try:
            return self._auth.token()
        except AuthError as exc:
            raise ServerError(str(exc)) from exc

    def _retry_after_401(self, status: int, attempt: int) -> bool:
        """A 401 means the server no longer accepts the token (revoked, expired early):
        log in again and retry once. A second 401 is the caller's error to see."""
        if status != 401 or attempt > 1 or not self._auth.invalidate():
            return False
        LOG.warning("taas-server refused the agent's token (401): logging in again")
        return True

    def heartbeat(self, tunnel_ip: str) -> dict[str, Any]:
        """Register the agent, or tell the server it is alive."""
        cached = self._agent
        if (cached is not None and cached.get("watch_keeps_alive") and self._watching
                and cached.get("configurations", {}).get("tunnel_ip") == tunnel_ip
                and time.monotonic() - self._beat_at < FULL_HEARTBEAT):
            self.skipped += 1
            return cached
        body = self._call(self._http, "PUT", f"/v2.0/taas-agents/{self.host}",
                          json={"agent": {"tunnel_ip": tunnel_ip}})
        agent = body.get("agent", {})
        if isinstance(agent, dict):
            self._ports_digest = agent.get("ports_digest")
            self._report_digest = agent.get("report_digest")
            self._agent, self._beat_at = agent, time.monotonic()
        return agent

    def report_ports(self, ports: Iterable[LocalPort]) -> list[str]:
        """Send the full set of VM ports on br-int (unless the server holds it already, bound
        here); returns the ids the inventory does not know."""
        ports = sorted(ports, key=lambda p: p.port_id)
        digest = ports_digest(p.port_id for p in ports)
        if digest == self._ports_digest:
            self.skipped += 1
            return []
        payload = [
            {"port_id": p.port_id, "ofport": p.ofport, "local_vlan": p.local_vlan,
             "mac": p.mac, "name": p.name}
            for p in ports
        ]
        body = self._call(self._http, "PUT", f"/v2.0/taas-agents/{self.host}/ports",
                          json={"ports": payload})
        self._ports_digest = body.get("ports_digest")
        return list(body.get("unknown", []))

    def get_desired_state(self, revision: int | None, timeout: float) -> DesiredState:
        """Long-poll: answers at once if the server's revision differs from ``revision``."""
        params: dict[str, Any] = {"timeout": int(timeout)}
        if revision is not None:
            params["revision"] = revision
        path = f"{self._url.path.rstrip('/')}/v2.0/taas-agents/{self.host}/desired-state"
        with self._watch_lock:
            if self._closed:
                raise ServerError("client closed")
            if self._watch_conn is None:
                cls = (http.client.HTTPSConnection if self._url.scheme == "https"
                       else http.client.HTTPConnection)
                self._watch_conn = cls(self._url.hostname or "localhost", self._url.port,
                                       timeout=self.timeout)
            conn = self._watch_conn
        try:
            for attempt in (1, 2):
                conn.timeout = timeout + self.timeout
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request("GET", f"{path}?{urlencode(params)}", headers={
                    "X-Auth-Token": self._token(), "Accept": "application/json"})
                self._watching = revision is not None  # the server holds it: we are alive
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
                if not self._retry_after_401(status, attempt):
                    break
        except (OSError, http.client.HTTPException) as exc:
            with self._watch_lock:
                if self._watch_conn is conn:
                    self._watch_conn = None
            conn.close()
            raise ServerError(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._watching = False
        if status >= 400:
            raise ServerError(f"GET {path}: HTTP {status}: {data[:300]!r}", status)
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise ServerError(f"GET {path}: invalid JSON answer") from exc
        if isinstance(body, dict) and "ports_digest" in body:  # fresh from the server
            self._ports_digest = body.get("ports_digest")
            self._report_digest = body.get("report_digest")
        try:
            return DesiredState.from_dict(body["desired_state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError(f"malformed desired state: {exc}") from exc

    def report(self, report: HostReport) -> None:
        """Tell the server what this host holds after a convergence (unless it has it)."""
        digest = report.digest()
        if digest == self._report_digest:
            self.skipped += 1
            return
        self._call(self._http, "PUT", f"/v2.0/taas-agents/{self.host}/report",
                   json={"report": report.to_dict()})
        self._report_digest = digest


    def counters_interval(self) -> float | None:
        """How often the server takes counters (its register answer), None: it takes none
        (an older server) or the agent has not registered yet."""
        value = (self._agent or {}).get("counters_interval")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def report_counters(self, report: CountersReport) -> None:
        """The counters that changed (docs/agent-api.md, "Counters")."""
        self._call(self._http, "PUT", f"/v2.0/taas-agents/{self.host}/counters",
                   json={"counters": report.to_dict()})
