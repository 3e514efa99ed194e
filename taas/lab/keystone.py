"""A real Keystone (Debian's `keystone` package, served by uwsgi) on a loopback port: the
tests' Keystone (taas.testing.keystone.run_keystone) and the Neutron lab's (inside its control
namespace, taas/lab/neutron).

    ks = Keystone(workdir, port, db_url)   # netns=..., public_url=... for a lab
    ks.setup(); ks.start()
    ks.add_user("alice", "project-a", ["member"])
    ks.token("alice")                      # a project-scoped token of alice
    ks.set_network_endpoint(url)           # the catalog's `network` service

Its database is PostgreSQL (Keystone's SQL backend deadlocks on SQLite files: a request's
reader and writer connections lock each other out). Keystone runs under Debian's
/usr/bin/python3 (with Debian's psycopg2), not the project's interpreter.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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
expiration = {expiration}
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
    """A running Keystone; `.url` is the identity endpoint (`.../v3` is `.auth_url`).

    uwsgi listens on 127.0.0.1:`port` (inside `netns` when given); `public_url` is where this
    process reaches it (default: that address), `internal_url` the catalog's internal identity
    endpoint (default: the public one)."""

    workdir: Path
    port: int
    db_url: str
    netns: str | None = None
    public_url: str | None = None
    internal_url: str | None = None
    token_expiration: int = 7200  # seconds
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    users: dict[str, User] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # name -> id
    roles: dict[str, str] = field(default_factory=dict)  # name -> id
    proc: subprocess.Popen[bytes] | None = None
    _admin_token: str | None = None
    _endpoint_id: str | None = None

    @property
    def url(self) -> str:
        return self.public_url or f"http://127.0.0.1:{self.port}"

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
        (self.workdir / "keystone.conf").write_text(CONF.format(
            dir=self.workdir, db_url=self.db_url, expiration=self.token_expiration))
        (self.workdir / "keystone-policy.yaml").write_text("{}\n")
        self._manage("db_sync")
        user = ["--keystone-user", "root", "--keystone-group", "root"]
        self._manage("fernet_setup", *user)
        self._manage("credential_setup", *user)
        self._manage("bootstrap", "--bootstrap-password", self.admin_password,
                     "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                     "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                     "--bootstrap-region-id", REGION, "--bootstrap-public-url", self.auth_url,
                     "--bootstrap-internal-url", (self.internal_url or self.url) + "/v3")

    def start(self, timeout: float = 60.0) -> None:
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd = [*netns, "uwsgi", "--plugin", "python3", "--http-socket", f"127.0.0.1:{self.port}",
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

    def clouds_yaml(self, path: Path, clouds: dict[str, str]) -> Path:
        """Write a clouds.yaml with one cloud per (cloud name -> user name) and return it."""
        import yaml

        def entry(name: str) -> dict[str, Any]:
            u = self.users[name]
            return {"auth": {"auth_url": self.auth_url, "username": u.name,
                             "password": u.password, "project_name": u.project,
                             "user_domain_id": DOMAIN, "project_domain_id": DOMAIN},
                    "region_name": REGION, "identity_api_version": 3, "interface": "public"}

        path.write_text(yaml.safe_dump({"clouds": {c: entry(u) for c, u in clouds.items()}}))
        path.chmod(0o600)
        return path

    def set_network_endpoint(self, url: str, *, internal_url: str | None = None,
                             name: str = "taas") -> None:
        """Register (or move) the catalog's `network` service's public endpoint to `url`
        (and an internal one, when given)."""
        if self._endpoint_id is not None:
            self.api("PATCH", f"/endpoints/{self._endpoint_id}", {"endpoint": {"url": url}})
            return
        service = self.api("POST", "/services", {"service": {
            "type": "network", "name": name}})["service"]
        for interface, where in (("public", url), ("internal", internal_url)):
            if where is None:
                continue
            endpoint = self.api("POST", "/endpoints", {"endpoint": {
                "service_id": service["id"], "interface": interface, "region_id": REGION,
                "url": where}})["endpoint"]
            if interface == "public":
                self._endpoint_id = endpoint["id"]


def _system_env() -> dict[str, str]:
    """Keystone runs on Debian's python3: keep this interpreter's paths out of its way."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "OS_"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def keystone_available() -> bool:
    return Path(KEYSTONE_MANAGE).exists() and shutil.which("uwsgi") is not None


