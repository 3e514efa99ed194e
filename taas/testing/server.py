"""Run a real taas-server process on a free loopback port, for tests and benchmarks.

    with run_server() as srv:
        httpx.get(srv.url + "/v2.0/taas/tap_services",
                  headers={"X-Auth-Token": srv.tokens["admin"]})
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from taas.server.config import QUOTA_RESOURCES

# name -> (project_id, roles)
DEFAULT_IDENTITIES: dict[str, tuple[str, list[str]]] = {
    "admin": ("admin-project", ["admin"]),
    "service": ("service-project", ["service"]),
    "a-member": ("project-a", ["member"]),
    "a-reader": ("project-a", ["reader"]),
    "b-member": ("project-b", ["member"]),
    "b-reader": ("project-b", ["reader"]),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A taas-server subprocess; `.url`, `.tokens` (name -> token), `.stop()`, `.restart()`."""

    def __init__(
        self, db_url: str | None, tokens: dict[str, Any] | None,
        config: dict[str, Any],
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="taas-test-server-"))
        self.db_url = db_url or f"sqlite:///{self.workdir / 'taas.sqlite'}"
        identities = {
            name: (entry["project_id"], list(entry["roles"])) if isinstance(entry, dict)
            else (entry[0], list(entry[1]))
            for name, entry in (tokens or DEFAULT_IDENTITIES).items()
        }
        # Random tokens: several test runs may share this machine.
        self.tokens = {name: f"{name}-{secrets.token_hex(8)}" for name in identities}
        self.identities = {self.tokens[n]: identities[n] for n in identities}
        # Project name -> id where they differ (Keystone makes ids): see project().
        self.projects: dict[str, str] = {}
        tokens_file = self.workdir / "tokens.json"
        # {"host": ...} in an entry binds that token to one host's agent API.
        bound = {self.tokens[n]: e["host"] for n, e in (tokens or {}).items()
                 if isinstance(e, dict) and e.get("host")}
        tokens_file.write_text(json.dumps({"tokens": {
            tok: {"project_id": project, "roles": roles,
                  **({"host": bound[tok]} if tok in bound else {})}
            for tok, (project, roles) in self.identities.items()
        }}))
        self.config = dict(config)
        self.config_file = self.workdir / "taas.json"
        self.config_file.write_text(json.dumps({**config, "tokens_file": str(tokens_file),
                                                "db_url": self.db_url}))
        self.log_file = self.workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.src_root = Path(__file__).resolve().parents[2]

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "taas.server.cli", "--config", str(self.config_file),
               "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", str(self.config.get("log_level", "warning"))]
        env = dict(os.environ)
        # The server runs from this source tree whether or not the package is installed
        # (or from `src_root`, set before start(): e.g. an older commit's tree).
        env["PYTHONPATH"] = str(self.src_root) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_file, "ab") as log:
            # cwd: `python -m` puts it first on sys.path; it must not shadow src_root.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"taas-server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"taas-server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def project(self, name: str) -> str:
        """The id of project `name` (the name itself unless Keystone made the project)."""
        return self.projects.get(name, name)

    @property
    def noauth(self) -> bool:
        return self.config.get("auth_strategy") == "noauth"

    def headers(self, name: str) -> dict[str, str]:
        """Headers that make a request come from identity `name`: its token, or under
        auth_strategy=noauth the X-Project-Id/X-Roles it claims."""
        if self.noauth:
            project, roles = self.identities[self.tokens[name]]
            return {"X-Project-Id": project, "X-Roles": ",".join(roles)}
        return {"X-Auth-Token": self.tokens[name]}

    def client(self, name: str, **kwargs: Any) -> httpx.Client:
        """An httpx client for this server authenticated as identity `name`."""
        kwargs.setdefault("timeout", 90)
        return httpx.Client(base_url=self.url, headers=self.headers(name), **kwargs)


@contextmanager
def run_server(
    db_url: str | None = None,
    tokens: dict[str, Any] | None = None,
    **config: Any,
) -> Iterator[ServerProcess]:
    """A running taas-server; `tokens` maps name -> (project_id, roles) or
    {"project_id", "roles"[, "host"]} (defaults: admin, service, a-member, a-reader, b-member,
    b-reader; the token strings themselves are random: read them from `.tokens`). Extra keyword
    arguments are settings (vlan_range_start=..., agent_down_time=...). Everything is removed
    at exit. Quotas are unlimited unless given (quota_tap_service=..., as settings): most
    tests create far more than a user's default share in one project."""
    for resource in QUOTA_RESOURCES:
        config.setdefault(f"quota_{resource}", -1)
    server = ServerProcess(db_url, tokens, config)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
