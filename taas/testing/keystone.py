"""A real Keystone (Debian's `keystone` package, served by uwsgi) on a free loopback port.

    with run_keystone() as ks:
        ks.add_user("alice", "project-a", ["member"])
        ks.token("alice")                  # a project-scoped token of alice
        ks.set_network_endpoint(url)       # taas-server as the catalog's `network` service

Its database is a throwaway PostgreSQL (taas.testing.postgres; Keystone's SQL backend deadlocks
on SQLite files: a request's reader and writer connections lock each other out), fernet keys
live in a temp dir; everything (processes, files) goes at exit. Keystone runs under Debian's
/usr/bin/python3 (with Debian's psycopg2), not the interpreter of the tests.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from taas.testing.server import free_port

KEYSTONE_MANAGE = "/usr/bin/keystone-manage"
KEYSTONE_WSGI = "/usr/bin/keystone-wsgi-public"
REGION = "RegionOne"
DOMAIN = "default"

CONF = """\
[DEFAULT]
log_file = {dir}/keystone.log
[database]
connection = {db_url}
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
[identity]
# bcrypt's cheapest cost: test passwords are random and throwaway (issuing tokens is 10x faster)
password_hash_rounds = 4
[token]
provider = fernet
expiration = 7200
[cache]
# In-process cache of each worker: token validation 10x faster (the default is off).
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
policy_file = {dir}/keystone-policy.yaml
"""


class KeystoneError(RuntimeError):
    pass


@dataclass
class User:
    name: str
    password: str
    project: str
    roles: list[str]
    id: str = ""


@dataclass
class Keystone:
    """A running Keystone; `.url` is the identity endpoint (`.../v3` is `.auth_url`)."""

    workdir: Path
    port: int
    db_url: str
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    users: dict[str, User] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # name -> id
    roles: dict[str, str] = field(default_factory=dict)  # name -> id
    proc: subprocess.Popen[bytes] | None = None
    _admin_token: str | None = None
    _endpoint_id: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return self.url + "/v3"

    # ---- process ----------------------------------------------------------------------

    def _manage(self, *args: str) -> None:
        cmd = [KEYSTONE_MANAGE, "--config-file", str(self.workdir / "keystone.conf"), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, env=_system_env(), timeout=300)
        if res.returncode != 0:
            raise KeystoneError(f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
                                f"\n{self.log()}")

    def setup(self) -> None:
        (self.workdir / "keystone.conf").write_text(CONF.format(dir=self.workdir,
                                                                db_url=self.db_url))
        (self.workdir / "keystone-policy.yaml").write_text("{}\n")
        self._manage("db_sync")
        user = ["--keystone-user", "root", "--keystone-group", "root"]
        self._manage("fernet_setup", *user)
        self._manage("credential_setup", *user)
        self._manage("bootstrap", "--bootstrap-password", self.admin_password,
                     "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                     "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                     "--bootstrap-region-id", REGION, "--bootstrap-public-url", self.auth_url)

    def start(self, timeout: float = 60.0) -> None:
        cmd = ["uwsgi", "--plugin", "python3", "--http-socket", f"127.0.0.1:{self.port}",
               # One process (threads share its cache): with several, each worker's
               # in-memory cache would keep its own copy of the catalog and of revocations.
               "--wsgi-file", KEYSTONE_WSGI, "--master", "--processes", "1", "--threads", "4",
               "--single-interpreter", "--enable-threads", "--die-on-term", "--need-app",
               "--lazy-apps",
               "--buffer-size", "65535", "--chdir", str(self.workdir),
               # http-socket closes every connection after its answer: say so, or pooling
               # clients (requests, keystoneauth) reuse dead sockets ("connection reset").
               "--add-header", "Connection: close",
               "--env", f"OS_KEYSTONE_CONFIG_FILES={self.workdir / 'keystone.conf'}",
               "--disable-logging"]
        with open(self.workdir / "uwsgi.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=_system_env(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KeystoneError(f"uwsgi exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.auth_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise KeystoneError(f"Keystone did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            died = f"Keystone exited early ({self.proc.returncode}):\n{self.log()}"
            self.proc = None
            raise KeystoneError(died)  # a Keystone gone mid-session must not go unnoticed
        if self.proc is not None and self.proc.poll() is None:
            # uwsgi's master and workers share the session this Popen started.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        out = []
        for name in ("uwsgi.log", "keystone.log"):
            try:
                out.append((self.workdir / name).read_text(errors="replace")[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    # ---- identity API (as the bootstrap admin) ----------------------------------------

    def issue_token(self, user: str, password: str, project: str | None,
                    domain: str = DOMAIN) -> tuple[str, dict[str, Any]]:
        """A token of `user` scoped to `project` (None: unscoped) and its body."""
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"id": domain}}}}}
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"id": domain}}}
        r = httpx.post(self.auth_url + "/auth/tokens", json={"auth": auth}, timeout=30)
        if r.status_code != 201:
            raise KeystoneError(f"cannot get a token for {user}: {r.status_code} {r.text}")
        return r.headers["X-Subject-Token"], r.json()["token"]

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.issue_token("admin", self.admin_password, "admin")[0]
        return self._admin_token

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204)
            ) -> dict[str, Any]:
        r = httpx.request(method, self.auth_url + path, json=body, timeout=30,
                          headers={"X-Auth-Token": self.admin_token()})
        if r.status_code not in ok:
            raise KeystoneError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else {}

    def _find(self, kind: str, name: str) -> str | None:
        items = self.api("GET", f"/{kind}s?name={name}")[f"{kind}s"]
        return items[0]["id"] if items else None

    def role_id(self, name: str) -> str:
        if name not in self.roles:
            found = self._find("role", name)
            if found is None:
                found = self.api("POST", "/roles", {"role": {"name": name}})["role"]["id"]
            self.roles[name] = found
        return self.roles[name]

    def project_id(self, name: str) -> str:
        if name not in self.projects:
            found = self._find("project", name)
            if found is None:
                found = self.api("POST", "/projects", {"project": {
                    "name": name, "domain_id": DOMAIN}})["project"]["id"]
            self.projects[name] = found
        return self.projects[name]

    def add_user(self, name: str, project: str, roles: list[str]) -> User:
        """A user with `roles` on `project` (both made if missing); password random."""
        user = User(name=name, password=secrets.token_hex(12), project=project, roles=roles)
        project_id = self.project_id(project)
        user.id = self.api("POST", "/users", {"user": {
            "name": name, "password": user.password, "domain_id": DOMAIN}})["user"]["id"]
        for role in roles:
            self.api("PUT", f"/projects/{project_id}/users/{user.id}/roles/{self.role_id(role)}")
        self.users[name] = user
        return user

    def token(self, name: str) -> str:
        user = self.users[name]
        return self.issue_token(name, user.password, user.project)[0]

    def revoke(self, token: str) -> None:
        r = httpx.delete(self.auth_url + "/auth/tokens", timeout=30, headers={
            "X-Auth-Token": self.admin_token(), "X-Subject-Token": token})
        if r.status_code != 204:
            raise KeystoneError(f"cannot revoke a token: {r.status_code} {r.text}")

    def set_network_endpoint(self, url: str) -> None:
        """Register (or move) the catalog's `network` service's public endpoint to `url`."""
        if self._endpoint_id is not None:
            self.api("PATCH", f"/endpoints/{self._endpoint_id}", {"endpoint": {"url": url}})
            return
        service = self.api("POST", "/services", {"service": {
            "type": "network", "name": "taas", "description": "Tap-as-a-Service"}})["service"]
        self._endpoint_id = self.api("POST", "/endpoints", {"endpoint": {
            "service_id": service["id"], "interface": "public", "region_id": REGION,
            "url": url}})["endpoint"]["id"]


def _system_env() -> dict[str, str]:
    """Keystone runs on Debian's python3: keep this interpreter's paths out of its way."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "OS_"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def keystone_available() -> bool:
    return Path(KEYSTONE_MANAGE).exists() and shutil.which("uwsgi") is not None


@contextmanager
def run_keystone() -> Iterator[Keystone]:
    """A bootstrapped Keystone (admin user, project `admin`, roles admin/member/reader and
    `service`) on its own PostgreSQL cluster; removed with its files at exit."""
    from taas.testing.postgres import run_postgres

    with run_postgres(dbname="keystone") as pg_url:
        # Debian's SQLAlchemy 1.4 + psycopg2, not the tests' psycopg 3.
        db_url = pg_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        ks = Keystone(workdir=Path(tempfile.mkdtemp(prefix="taas-test-keystone-")),
                      port=free_port(), db_url=db_url)
        with _running(ks):
            yield ks


@contextmanager
def _running(ks: Keystone) -> Iterator[Keystone]:
    try:
        ks.setup()
        ks.start()
        ks.role_id("service")
        yield ks
    finally:
        ks.stop()
        shutil.rmtree(ks.workdir, ignore_errors=True)


SERVICE_USER = "taas"  # taas-server's own Keystone user (validates the callers' tokens)


def populate(ks: Keystone, identities: dict[str, tuple[str, list[str]]] | None = None) -> None:
    """Users for the test identities (name -> (project, roles); default: the ones of
    taas.testing.server) and taas-server's service user in project `service`."""
    from taas.testing.server import DEFAULT_IDENTITIES

    for name, (project, roles) in (identities or DEFAULT_IDENTITIES).items():
        if name == "admin":
            # The bootstrap admin (project "admin") stands for the cloud admin.
            ks.users["admin"] = User("admin", ks.admin_password, "admin", ["admin"])
            ks.project_id("admin")
            continue
        ks.add_user(name, project, roles)
    ks.add_user(SERVICE_USER, "service", ["service"])


@contextmanager
def run_keystone_server(ks: Keystone, db_url: str | None = None,
                        **config: Any) -> Iterator[Any]:
    """A taas-server with auth_strategy keystone against `ks`; `.tokens` are Keystone tokens
    of the users populate() made and `.projects` maps project names to Keystone ids."""
    from taas.testing.server import run_server

    svc = ks.users[SERVICE_USER]
    settings = {"auth_strategy": "keystone", "keystone_auth_url": ks.auth_url,
                "keystone_username": svc.name, "keystone_password": svc.password,
                "keystone_project_name": svc.project,
                # A loaded test machine may make Keystone slow; a timeout there is no finding.
                "keystone_timeout": 120, **config}
    with run_server(db_url=db_url, **settings) as srv:
        srv.tokens = {name: ks.token(name) for name in ks.users if name != SERVICE_USER}
        srv.projects = dict(ks.projects)
        yield srv
