"""taas-agent: the per-hypervisor agent's command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from taas.agent.agent import Agent, AgentConfig
from taas.agent.auth import KeystoneCredentials, KeystoneToken
from taas.agent.client import ServerClient
from taas.agent.port_monitor import PortMonitor
from taas.common import prereqs

LOG = logging.getLogger("taas.agent")
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(threadName)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# --os-<name> options (and $OS_<NAME>) of a Keystone login, with their defaults.
KEYSTONE_OPTIONS = {"auth_url": "", "username": "", "password": "", "project_name": "",
                    "user_domain_name": "Default", "project_domain_name": "Default"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taas-agent",
        description="Tap-as-a-Service agent: converges one hypervisor's Open vSwitch to the "
                    "desired state published by taas-server.")
    p.add_argument("--host", required=True, help="this hypervisor's name (binding:host_id)")
    p.add_argument("--server", required=True, help="taas-server base URL, e.g. http://h:9696")
    p.add_argument("--token", default=os.environ.get("TAAS_TOKEN"),
                   help="a fixed token with the service role (tokens file, labs; default: "
                        "$TAAS_TOKEN); in a cloud, log in to Keystone with --os-* instead")
    ks = p.add_argument_group(
        "Keystone", "log in as a user with the service role; the token is renewed before it "
                    "expires (defaults: the OS_* variables, as for the openstack CLI)")
    for name, default in KEYSTONE_OPTIONS.items():
        env = "OS_" + name.upper()
        ks.add_argument(f"--os-{name.replace('_', '-')}", dest=f"os_{name}",
                        default=os.environ.get(env, default),
                        help=f"(default: ${env}" + (f" or {default})" if default else ")"))
    p.add_argument("--ovsdb", default="unix:/var/run/openvswitch/db.sock",
                   help="OVSDB endpoint (default: %(default)s)")
    p.add_argument("--ovs-rundir", default="/var/run/openvswitch",
                   help="directory holding the <bridge>.mgmt sockets (default: %(default)s)")
    p.add_argument("--tunnel-ip", required=True, help="this host's tunnel (underlay) IP")
    p.add_argument("--integration-bridge", default="br-int")
    p.add_argument("--tunnel-bridge", default="br-tun")
    p.add_argument("--tap-bridge", default="br-tap")
    p.add_argument("--continuation", default="NORMAL",
                   help="OpenFlow actions a tapped port's frames take after their copies are "
                        "made: the action of the L2 agent's own table-0 default flow on "
                        "br-int, so tapped ports keep its anti-spoofing and firewall "
                        "(default: %(default)s, right for an L2 agent that switches with "
                        "NORMAL; for a table chain e.g. 'resubmit(,60)')")
    p.add_argument("--hook-table", type=int, default=0,
                   help="br-int table of the hooks that make a port's copies (default: "
                        "%(default)s). Beside neutron-openvswitch-agent: the table its pipeline "
                        "reaches only with frames that passed anti-spoofing (60 with the noop "
                        "firewall), with --continuation the action of that table's flow "
                        "(NORMAL): forged frames are then neither copied nor let through")
    p.add_argument("--report-interval", type=float, default=10.0,
                   help="heartbeat period in seconds (default: %(default)s)")
    p.add_argument("--resync-interval", type=float, default=2.0,
                   help="full diff against the switch every N seconds, 0 = off "
                        "(default: %(default)s)")
    p.add_argument("--verify-interval", type=float, default=60.0,
                   help="full dump-and-diff of every bridge every N seconds, 0 = off "
                        "(default: %(default)s)")
    p.add_argument("--reset-check-interval", type=float, default=1.0,
                   help="canary check (OVS restart) every N seconds (default: %(default)s)")
    p.add_argument("--log-file", help="log to this file instead of stderr")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def token_source(parser: argparse.ArgumentParser,
                 args: argparse.Namespace) -> str | KeystoneToken:
    """--token, or a Keystone login when --os-auth-url is given (which then wins)."""
    if args.os_auth_url:
        missing = [f"--os-{n.replace('_', '-')}" for n in KEYSTONE_OPTIONS
                   if not getattr(args, f"os_{n}")]
        if missing:
            parser.error(f"Keystone login needs {', '.join(missing)} (or $OS_* variables)")
        return KeystoneToken(KeystoneCredentials(
            auth_url=args.os_auth_url, username=args.os_username, password=args.os_password,
            project_name=args.os_project_name, user_domain_name=args.os_user_domain_name,
            project_domain_name=args.os_project_domain_name))
    if not args.token:
        parser.error("--token (or $TAAS_TOKEN) or --os-auth-url (or $OS_AUTH_URL) is required")
    return str(args.token)


def setup_logging(log_file: str | None, level: str) -> None:
    handler: logging.Handler = (logging.FileHandler(log_file) if log_file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "ovsdbapp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    auth = token_source(parser, args)
    try:  # before anything runs: a missing ovs-ofctl would otherwise fail every sync
        prereqs.require("taas-agent")
    except prereqs.MissingPrerequisites as e:
        print(f"taas-agent: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_file, args.log_level)

    from taas.agent.ovs.driver import OvsDriver  # the switch-facing half
    from taas.agent.ovs.ovsdb import OvsdbClient

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        LOG.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    db = OvsdbClient(args.ovsdb)  # one OVSDB connection: the port monitor's and the driver's
    driver = OvsDriver(db, args.ovs_rundir, args.host, args.tunnel_ip,
                       int_br=args.integration_bridge, tun_br=args.tunnel_bridge,
                       tap_br=args.tap_bridge, continuation=args.continuation,
                       hook_table=args.hook_table)
    client = ServerClient(args.server, auth, args.host)
    config = AgentConfig(host=args.host, tunnel_ip=args.tunnel_ip,
                         report_interval=args.report_interval,
                         resync_interval=args.resync_interval,
                         verify_interval=args.verify_interval,
                         reset_check_interval=args.reset_check_interval)
    agent = Agent(config, driver, client,
                  monitor_factory=lambda cb: PortMonitor(db, args.integration_bridge, cb))
    LOG.info("taas-agent pid %d: host=%s server=%s ovsdb=%s rundir=%s bridges=%s/%s/%s "
             "auth=%s", os.getpid(), args.host, args.server, args.ovsdb, args.ovs_rundir,
             args.integration_bridge, args.tunnel_bridge, args.tap_bridge,
             f"keystone {args.os_auth_url} user {args.os_username}" if args.os_auth_url
             else "token")
    agent.start()
    while not stop.wait(1.0):
        pass
    agent.stop()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
