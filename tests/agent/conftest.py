"""Fixtures of the agent's unit tests: a real ovsdb-server, a fake taas-server, a fake driver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from taas.common.desired_state import DesiredState, HostReport, ResourceStatus
from taas.testing.wait import wait_until

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def wait_for(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``cond`` (finely: the agent's loops run at tens of ms) until it is truthy."""
    return wait_until(cond, timeout, interval)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (PID 1 here reaps late) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- a real ovsdb-server ---------------------------------------------------------------------
class OvsdbServer:
    """ovsdb-server with the Open_vSwitch schema in a temp dir (no ovs-vswitchd)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sock = directory / "db.sock"
        self.remote = f"unix:{self.sock}"
        self.pidfile = directory / "ovsdb-server.pid"
        subprocess.run(["ovsdb-tool", "create", str(directory / "conf.db"), SCHEMA], check=True)
        self.start()
        self.vsctl("init")

    def start(self) -> None:
        subprocess.run(
            ["ovsdb-server", f"--remote=punix:{self.sock}", f"--unixctl={self.dir}/ctl",
             f"--pidfile={self.pidfile}", "--detach", f"--log-file={self.dir}/ovsdb.log",
             str(self.dir / "conf.db")], check=True)

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return
        # SIGKILL: SIGTERM takes ovsdb-server ~2 s, and its log-structured DB survives a kill.
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.01)
        self.pidfile.unlink(missing_ok=True)
        self.sock.unlink(missing_ok=True)

    def vsctl(self, *args: str) -> str:
        return subprocess.run(["ovs-vsctl", f"--db={self.remote}", "--no-wait", *args],
                              check=True, capture_output=True, text=True).stdout


@pytest.fixture
def ovsdb() -> Iterator[OvsdbServer]:
    d = Path(tempfile.mkdtemp(prefix="taas-agt-ovsdb-"))
    server = None
    try:
        server = OvsdbServer(d)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(d, ignore_errors=True)


# -- a fake taas-server (the agent-facing API only) -----------------------------------------
class FakeServer:
    """Implements docs/agent-api.md in memory, with long-poll, and can be stopped/restarted."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.revision = 1
        self.states: dict[str, DesiredState] = {}
        self.heartbeats: list[tuple[str, str]] = []
        self.ports: dict[str, list[dict[str, Any]]] = {}
        self.port_calls = 0
        self.reports: list[HostReport] = []
        self.requests: list[tuple[str, str]] = []
        self.token = "svc-token"
        self.port = 0
        self.conns: set[socket.socket] = set()
        self.down = False
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server.cond:
                    server.conns.add(self.connection)

            def finish(self) -> None:
                with server.cond:
                    server.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def _route(self, method: str) -> None:
                u = urlparse(self.path)
                server.requests.append((method, u.path))
                if self.headers.get("X-Auth-Token") != server.token:
                    self._send(401, {"NeutronError": {"type": "NotAuthorized",
                                                      "message": "bad token", "detail": ""}})
                    return
                parts = u.path.strip("/").split("/")
                if parts[:2] != ["v2.0", "taas-agents"] or len(parts) < 3:
                    self._send(404, {"NeutronError": {"type": "NotFound", "message": u.path,
                                                      "detail": ""}})
                    return
                host, rest = parts[2], parts[3:]
                if method == "PUT" and not rest:
                    tip = self._body()["agent"]["tunnel_ip"]
                    with server.cond:
                        server.heartbeats.append((host, tip))
                    self._send(200, {"agent": {"host": host, "tunnel_ip": tip}})
                elif method == "PUT" and rest == ["ports"]:
                    ports = self._body()["ports"]
                    with server.cond:
                        server.ports[host] = ports
                        server.port_calls += 1
                        server.cond.notify_all()
                    self._send(200, {"ports": ports, "unknown": []})
                elif method == "PUT" and rest == ["report"]:
                    report = HostReport.from_dict(self._body()["report"])
                    with server.cond:
                        server.reports.append(report)
                        server.cond.notify_all()
                    self._send(200, {"report": report.to_dict()})
                elif method == "GET" and rest == ["desired-state"]:
                    q = parse_qs(u.query)
                    rev = int(q["revision"][0]) if "revision" in q else None
                    timeout = min(float(q.get("timeout", ["30"])[0]), 60)
                    with server.cond:
                        server.cond.wait_for(lambda: rev != server.revision or server.down,
                                             timeout=timeout)
                        if server.down:
                            return
                        state = server.states.get(host, DesiredState(host, server.revision))
                        state = DesiredState(**{**state.__dict__, "revision": server.revision})
                    self._send(200, {"desired_state": state.to_dict()})
                else:
                    self._send(404, {"NeutronError": {"type": "NotFound", "message": u.path,
                                                      "detail": ""}})

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

        self.down = False
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        httpd.allow_reuse_address = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self.cond:  # a dead server also drops its open (keep-alive, long-poll) connections
            self.down = True
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()
            self.cond.notify_all()

    def set_state(self, state: DesiredState) -> int:
        with self.cond:
            self.revision += 1
            self.states[state.host] = state
            self.cond.notify_all()
            return self.revision

    def last_report(self, host: str) -> HostReport | None:
        with self.cond:
            for r in reversed(self.reports):
                if r.host == host:
                    return r
        return None


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    s = FakeServer()
    try:
        yield s
    finally:
        s.stop()


# -- a fake OVS driver -----------------------------------------------------------------------
@dataclass
class FakeSyncResult:
    statuses: tuple[ResourceStatus, ...]
    taas_ids: tuple[int, ...]
    added: int
    removed: int


@dataclass
class FakeDriver:
    """Models the driver's contract: 'flows' are (kind, id) pairs; sync diffs and applies."""

    flows: set[tuple[str, str]] = field(default_factory=set)
    taas_ids: set[int] = field(default_factory=set)
    reset: bool = True  # a fresh switch has no canary
    fail: int = 0  # the next N calls to sync raise
    setups: int = 0
    calls: list[tuple[int, int, int, int]] = field(default_factory=list)  # rev, nports, +, -
    sync_ports: list[dict[str, Any]] = field(default_factory=list)
    verifies: int = 0  # syncs asked to dump and diff every bridge (verify=True)
    held: tuple[int, ...] = ()  # what held_taas_ids() reads back from the "switch"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def setup(self) -> None:
        with self.lock:
            self.setups += 1
            self.reset = False

    def switch_was_reset(self) -> bool:
        with self.lock:
            return self.reset

    def wipe(self) -> None:
        """OVS restarted: every flow, canary included, is gone."""
        with self.lock:
            self.flows.clear()
            self.taas_ids.clear()
            self.reset = True

    def sync(self, desired: DesiredState, ports: dict[str, Any],
             verify: bool = False) -> FakeSyncResult:
        with self.lock:
            self.verifies += verify
            if self.fail:
                self.fail -= 1
                raise RuntimeError("ovs-ofctl: connection refused")
            want: set[tuple[str, str]] = set()
            statuses = []
            for s in desired.tap_services:
                want.add(("tap_service", s.id))
                statuses.append(ResourceStatus("tap_service", s.id, "ACTIVE"))
            for f in desired.tap_flows:
                if f.source_port in ports:
                    want.add(("tap_flow", f.id))
                    statuses.append(ResourceStatus("tap_flow", f.id, "ACTIVE"))
            added = len(want - self.flows)
            removed = len(self.flows - want)
            self.flows = want
            self.taas_ids = {s.taas_id for s in desired.tap_services}
            self.calls.append((desired.revision, len(ports), added, removed))
            self.sync_ports.append(dict(ports))
            return FakeSyncResult(tuple(statuses), tuple(sorted(self.taas_ids)), added, removed)

    def held_taas_ids(self) -> tuple[int, ...]:
        with self.lock:
            return self.held

    def close(self) -> None:
        pass


@pytest.fixture
def fake_driver() -> FakeDriver:
    return FakeDriver()
