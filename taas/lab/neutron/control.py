"""The Neutron lab's control plane: one namespace `tlab-<lab>-ctl` holding PostgreSQL,
RabbitMQ, Keystone, neutron-server (ML2/OVS, auth_strategy keystone) and taas-server
(auth_strategy keystone, port_backend = neutron), plus one neutron-openvswitch-agent inside each
host namespace (docs/neutron.md, "The Neutron lab").

Everything runs inside the lab's namespaces, so `taas lab down` (which kills every process in
them) removes it. Neutron runs on Debian's own python (/usr/bin/python3, OpenStack Zed
packages); taas on the project's.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from taas.lab.keystone import Keystone

DEBIAN_PY = "/usr/bin/python3"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
NEUTRON_PORT = 9696
TAAS_PORT = 9697
KEYSTONE_PORT = 5000
# Keystone tokens of the lab (the state file keeps the admin's) live as long as a lab may.
TOKEN_LIFETIME = 30 * 86400
AMQP_PORT = 5672
RABBIT_USER = "taas"
# The OpenFlow controller every neutron agent listens on inside its host namespace.
OF_LISTEN_PORT = 6633
# Neutron's tenant VNI range in the lab; the taas range (16_003_900..) is far above it.
NEUTRON_VNI_RANGE = "1:65535"
REQUIRED = ("neutron-server", "neutron-openvswitch-agent", "neutron-db-manage",
            "keystone-manage", "uwsgi")
REPO = Path(__file__).resolve().parents[3]
# The TaaS service plugin loaded into neutron-server (issue 9): /v2.0/taas/... -> taas-server.
PLUGIN = "taas.neutron_plugin.plugin.TaasProxyPlugin"
PLUGIN_EXTENSIONS = REPO / "taas" / "neutron_plugin" / "extensions"


class NeutronLabError(RuntimeError):
    """The Neutron control plane could not be built."""


def _run(args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None,
         check: bool = True) -> str:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise NeutronLabError(f"{' '.join(args)} failed (rc={p.returncode}):\n"
                              f"{(p.stderr or p.stdout)[-3000:]}")
    return p.stdout


def _ns(ns: str, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def check_installed() -> None:
    missing = [b for b in REQUIRED if shutil.which(b) is None]
    missing += [str(p) for p in (PG_BIN / "initdb", RABBIT_BIN / "rabbitmq-server")
                if not p.exists()]
    if missing:
        raise NeutronLabError(
            f"the Neutron lab needs {', '.join(missing)}: run scripts/install-deps.sh")


def _spawn(ns: str, args: list[str], log: Path, env: dict[str, str] | None = None,
           cwd: str | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(_ns(ns, args), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=cwd)


def _wait(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise NeutronLabError(f"{what}: process exited rc={proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise NeutronLabError(f"{what}: not ready after {timeout:.0f} s\n{tail}")
        time.sleep(interval)


class ControlPlane:
    """Builds the control namespace of lab `name` under `lab_dir`/ctl."""

    def __init__(self, name: str, lab_dir: str, hosts: list[dict[str, Any]],
                 log: Any = None) -> None:
        self.name = name
        self.ns = f"tlab-{name}-ctl"
        self.dir = Path(lab_dir) / "ctl"
        self.hosts = hosts
        self.log = log or (lambda _m: None)
        self.amqp_pass = secrets.token_hex(8)
        self.transport_url = f"rabbit://{RABBIT_USER}:{self.amqp_pass}@127.0.0.1:{AMQP_PORT}/"
        self.timings: dict[str, float] = {}
        self.neutron_url = ""
        self.taas_url = ""
        self.keystone_url = ""
        self.keystone: Keystone | None = None
        self.admin_token = ""

    # -- namespace and relay -------------------------------------------------------------------
    def create_namespace(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _run(["ip", "netns", "add", self.ns])
        _run(["ip", "-n", self.ns, "link", "set", "lo", "up"])

    def start_relay(self) -> None:
        """neutron-server and taas-server for the root namespace, RabbitMQ for the hosts."""
        specs = [f"-,127.0.0.1,0,{NEUTRON_PORT}", f"-,127.0.0.1,0,{TAAS_PORT}",
                 f"-,127.0.0.1,0,{KEYSTONE_PORT}"]
        specs += [f"{h['netns']},127.0.0.1,{AMQP_PORT},{AMQP_PORT}" for h in self.hosts]
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        p = subprocess.Popen([sys.executable, "-m", "taas.lab.neutron.relay", self.ns, *specs],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=open(self.dir / "relay.log", "ab"), start_new_session=True,
                             env=env)
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise NeutronLabError("relay did not start: "
                                  + (self.dir / "relay.log").read_text(errors="replace"))
        ports = json.loads(line)
        self.neutron_url = f"http://127.0.0.1:{ports[0]}"
        self.taas_url = f"http://127.0.0.1:{ports[1]}"
        self.keystone_url = f"http://127.0.0.1:{ports[2]}"

    # -- PostgreSQL (Neutron's and Keystone's databases) -----------------------------------------
    def start_postgres(self) -> str:
        t0 = time.monotonic()
        pg = self.dir / "pg"
        sock = pg / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam("postgres")
        for p in (pg, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_pg = ["runuser", "-u", "postgres", "--"]
        _run([*as_pg, str(PG_BIN / "initdb"), "-D", str(pg / "data"), "-U", "postgres",
              "-A", "trust", "-E", "UTF8", "--no-sync"])
        opts = (f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200")
        _run(_ns(self.ns, [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(pg / "data"), "-l",
                           str(pg / "postgres.log"), "-o", opts, "-w", "-t", "60", "start"]))
        for db in ("neutron", "keystone"):
            _run([*as_pg, "psql", "-h", str(sock), "-U", "postgres", "-qc",
                  f"CREATE DATABASE {db}"])
        self.timings["postgres"] = round(time.monotonic() - t0, 1)
        self.pg_sock = sock
        return f"postgresql+psycopg2://postgres@/neutron?host={sock}"

    # -- RabbitMQ ---------------------------------------------------------------------------------
    def _rabbit_env(self) -> dict[str, str]:
        r = self.dir / "rabbit"
        return {**os.environ, "HOME": str(r), "RABBITMQ_NODENAME": f"taas{self.name}@localhost",
                "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(r / "mnesia"), "RABBITMQ_LOG_BASE": str(r / "log"),
                "RABBITMQ_PID_FILE": str(r / "rabbit.pid"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(r / "none"), "ERL_EPMD_ADDRESS": "127.0.0.1"}

    def start_rabbit(self) -> subprocess.Popen[bytes]:
        """Start RabbitMQ (as root, own HOME/cookie/mnesia); `wait_rabbit` waits for it."""
        self._rabbit_t0 = time.monotonic()
        r = self.dir / "rabbit"
        for sub in ("mnesia", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        cookie = r / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (r / "enabled_plugins").write_text("[].\n")
        (r / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{AMQP_PORT}\nloopback_users = none\n"
            f"default_user = {RABBIT_USER}\ndefault_pass = {self.amqp_pass}\n"
            "log.file.level = warning\n")
        self.rabbit = _spawn(self.ns, [str(RABBIT_BIN / "rabbitmq-server")],
                             r / "log" / "stdout.log", env=self._rabbit_env(), cwd=str(r))
        return self.rabbit

    def wait_rabbit(self) -> None:
        _run(_ns(self.ns, [str(RABBIT_BIN / "rabbitmqctl"), "-q", "await_startup", "--timeout",
                           "120"]), env=self._rabbit_env(), timeout=150)
        self.timings["rabbitmq"] = round(time.monotonic() - self._rabbit_t0, 1)

    # -- Keystone -------------------------------------------------------------------------------
    def start_keystone(self, projects: list[str]) -> Keystone:
        """Keystone in this namespace on :5000 (database on the lab's PostgreSQL): the bootstrap
        admin; service users `neutron` (keystonemiddleware), `taas` (taas-server: validates
        tokens, reads Neutron as admin) and `taas-agent`; one `<project>-member` per project.
        Catalog: identity and network, public = the relayed URLs the root namespace uses,
        internal = this namespace's (what neutron-server and taas-server use)."""
        t0 = time.monotonic()
        work = self.dir / "keystone"
        work.mkdir(parents=True, exist_ok=True)
        ks = Keystone(workdir=work, port=KEYSTONE_PORT,
                      db_url=f"postgresql+psycopg2://postgres@/keystone?host={self.pg_sock}",
                      netns=self.ns, public_url=self.keystone_url,
                      internal_url=f"http://127.0.0.1:{KEYSTONE_PORT}",
                      token_expiration=TOKEN_LIFETIME)
        ks.setup()
        ks.start(timeout=120)
        ks.add_user("neutron", "service", ["service"])
        ks.add_user("taas", "service", ["service", "admin"])
        ks.add_user("taas-agent", "service", ["service"])
        for project in projects:
            ks.add_user(f"{project}-member", project, ["member"])
        ks.set_network_endpoint(self.neutron_url, name="neutron",
                                internal_url=f"http://127.0.0.1:{NEUTRON_PORT}")
        self.admin_token = ks.admin_token()
        self.keystone = ks
        self.timings["keystone"] = round(time.monotonic() - t0, 1)
        return ks

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.admin_token}

    def _internal_auth_url(self) -> str:
        return f"http://127.0.0.1:{KEYSTONE_PORT}/v3"

    # -- neutron-server -------------------------------------------------------------------------
    def write_neutron_config(self, db_url: str) -> list[str]:
        state = self.dir / "neutron-state"
        (state / "lock").mkdir(parents=True, exist_ok=True)
        neutron_conf = self.dir / "neutron.conf"
        neutron_conf.write_text(f"""[DEFAULT]
bind_host = 127.0.0.1
bind_port = {NEUTRON_PORT}
auth_strategy = keystone
core_plugin = ml2
service_plugins = {PLUGIN}
api_extensions_path = {PLUGIN_EXTENSIONS}
allow_overlapping_ips = True
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
notify_nova_on_port_status_changes = False
notify_nova_on_port_data_changes = False
transport_url = {self.transport_url}
state_path = {state}
api_paste_config = /etc/neutron/api-paste.ini
global_physnet_mtu = 1500
[database]
connection = {db_url}
[oslo_concurrency]
lock_path = {state}/lock
[oslo_messaging_notifications]
# taas-server follows port/network changes through these notifications
driver = messagingv2
[agent]
root_helper =
[taas_server]
url = http://127.0.0.1:{TAAS_PORT}
""")
        ml2 = self.dir / "ml2_conf.ini"
        ml2.write_text(f"""[ml2]
type_drivers = vxlan,flat,vlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_vxlan]
vni_ranges = {NEUTRON_VNI_RANGE}
[securitygroup]
enable_security_group = False
firewall_driver = noop
""")
        return ["--config-file", str(neutron_conf), "--config-file", str(ml2)]

    def write_authtoken_config(self) -> list[str]:
        """keystonemiddleware's section (once Keystone has the `neutron` user)."""
        conf = self.dir / "neutron-keystone.conf"
        conf.write_text(f"""[keystone_authtoken]
www_authenticate_uri = {self.keystone_url}/v3
auth_url = {self._internal_auth_url()}
auth_type = password
username = neutron
password = {self._password("neutron")}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
interface = internal
""")
        conf.chmod(0o600)
        return ["--config-file", str(conf)]

    def _password(self, user: str) -> str:
        assert self.keystone is not None
        return self.keystone.users[user].password

    def migrate(self, conf: list[str]) -> None:
        t0 = time.monotonic()
        _run(_ns(self.ns, ["neutron-db-manage", *conf, "upgrade", "heads"]), timeout=300)
        self.timings["db_migrations"] = round(time.monotonic() - t0, 1)

    def start_neutron_server(self, conf: list[str]) -> None:
        t0 = time.monotonic()
        log = self.dir / "neutron-server.log"
        # Debian's python and packages, plus this checkout for the TaaS service plugin only.
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = _spawn(self.ns, ["neutron-server", *conf, "--log-file", str(log)],
                      self.dir / "neutron-server.stdout", env=env)
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"{self.neutron_url}/v2.0/networks", headers=self.headers,
                                 timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        _wait("neutron-server", up, 180, proc, log)
        self.timings["neutron_server"] = round(time.monotonic() - t0, 1)

    # -- neutron-openvswitch-agent per host -----------------------------------------------------
    def _agent_conf(self, h: dict[str, Any]) -> Path:
        rd = h["run_dir"]
        state = Path(rd) / "neutron-agent"
        (state / "lock").mkdir(parents=True, exist_ok=True)
        conf = Path(rd) / "neutron-agent.ini"
        # root_helper must not be empty: oslo.privsep would fall back to `sudo privsep-helper`,
        # which drops OVS_RUNDIR (NEUTRON.md trap 5).
        conf.write_text(f"""[DEFAULT]
host = {h['name']}
transport_url = {self.transport_url}
state_path = {state}
[oslo_concurrency]
lock_path = {state}/lock
[agent]
root_helper = env OVS_RUNDIR={rd}
tunnel_types = vxlan
l2_population = False
arp_responder = False
report_interval = 10
[ovs]
integration_bridge = br-int
tunnel_bridge = br-tun
local_ip = {h['tunnel_ip']}
datapath_type = netdev
ovsdb_connection = unix:{rd}/db.sock
of_listen_address = 127.0.0.1
of_listen_port = {OF_LISTEN_PORT}
bridge_mappings =
[securitygroup]
firewall_driver = noop
enable_security_group = False
""")
        return conf

    def start_agent(self, h: dict[str, Any]) -> int:
        """Start the host's neutron-openvswitch-agent inside its namespace; its pid."""
        conf = self._agent_conf(h)
        rd = h["run_dir"]
        env = {**os.environ, "OVS_RUNDIR": rd}
        env.pop("PYTHONPATH", None)  # Debian's python and packages only
        p = _spawn(h["netns"], ["neutron-openvswitch-agent", "--config-file", str(conf),
                                "--log-file", f"{rd}/neutron-agent.log"],
                   Path(rd) / "neutron-agent.stdout", env=env)
        return p.pid

    def wait_agents(self, hosts: list[str], timeout: float = 180) -> None:
        import httpx

        def alive() -> bool:
            try:
                r = httpx.get(f"{self.neutron_url}/v2.0/agents", headers=self.headers,
                              params={"agent_type": "Open vSwitch agent"}, timeout=5)
            except httpx.HTTPError:
                return False
            up = {a["host"] for a in r.json().get("agents", []) if a["alive"]}
            return set(hosts) <= up

        _wait("neutron-openvswitch-agents", alive, timeout, interval=0.5)

    # -- taas-server ---------------------------------------------------------------------------
    def start_taas_server(self) -> None:
        """taas-server with Keystone: callers' tokens validated, Neutron read as user `taas`,
        its endpoint found in the catalog (internal interface)."""
        t0 = time.monotonic()
        cfg = self.dir / "taas-server.json"
        password = self._password("taas")
        cfg.write_text(json.dumps({
            "host": "127.0.0.1", "port": TAAS_PORT, "db_url": f"sqlite:///{self.dir}/taas.sqlite",
            "auth_strategy": "keystone", "keystone_auth_url": self._internal_auth_url(),
            "keystone_username": "taas", "keystone_password": password,
            "keystone_project_name": "service",
            "port_backend": "neutron",
            "neutron": {"auth_url": self._internal_auth_url(), "username": "taas",
                        "password": password, "project_name": "service",
                        "interface": "internal"},
            "neutron_transport_url": self.transport_url}))
        cfg.chmod(0o600)
        env = dict(os.environ)
        repo = str(REPO)
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = self.dir / "taas-server.log"
        proc = _spawn(self.ns, [sys.executable, "-c",
                                "import sys; from taas.server.cli import main; sys.exit(main())",
                                "--config", str(cfg)], log, env=env)
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"{self.taas_url}/", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        _wait("taas-server", up, 60, proc, log)
        self.taas_server_pid = proc.pid
        self.timings["taas_server"] = round(time.monotonic() - t0, 1)
