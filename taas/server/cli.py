"""taas-server: run the API (migrating the schema first), or `taas-server db upgrade`."""

from __future__ import annotations

import argparse
import logging
import sys
from types import FrameType
from typing import Any

from taas.server.config import (
    AUTH_STRATEGIES,
    DEFAULT_DB_URL,
    ConfigError,
    Settings,
    build_settings,
    read_config_file,
)

LOG = logging.getLogger("taas.server")
GRACEFUL_SHUTDOWN = 2.0  # seconds in-flight requests get at shutdown


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taas-server",
        description="Tap-as-a-Service API server (Neutron TaaS wire format).",
        epilog="Settings come from defaults, then --config, then the command line. The config "
        "file (YAML, JSON, or INI with a [taas] section) may also set vlan_range_start "
        "(3900), vlan_range_end (4000), tunnel_key_base (16000000), agent_down_time (30), "
        "service_driver, revision_poll_interval (60.0), the keystone_* settings and "
        "quota_tap_service (5), quota_tap_flow (50), quota_tap_mirror (5), quota_tap_filter "
        "(10), quota_tap_filter_rule (100: rules of all a project's filters). "
        "`taas-server db upgrade` only creates/migrates the schema. "
        "WARNING: --auth-strategy noauth trusts every caller (anyone who can reach the port "
        "is admin, or whoever its X-Project-Id/X-Roles headers claim): use it on trusted "
        "networks and labs only.",
    )
    p.add_argument("--config", metavar="FILE", help="settings file (YAML, JSON or INI)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 9696)")
    p.add_argument("--db-url", help=f"SQLAlchemy URL (default {DEFAULT_DB_URL}; PostgreSQL: "
                   "postgresql+psycopg://user:pw@host/db)")
    p.add_argument("--tokens-file", metavar="FILE",
                   help='JSON {"tokens": {"<token>": {"project_id": "...", "roles": [...]}}}')
    p.add_argument("--auth-strategy", choices=AUTH_STRATEGIES,
                   help="token (default): X-Auth-Token looked up in --tokens-file, else 401; "
                   "keystone: X-Auth-Token validated by Keystone v3 (settings keystone_auth_url, "
                   "keystone_username/keystone_password or keystone_service_token, "
                   "keystone_cache_ttl); "
                   "noauth: no token needed and any token ignored, the caller is admin of "
                   "project 'admin' unless X-Project-Id/X-Roles headers say otherwise. "
                   "noauth trusts every caller: trusted networks and labs only")
    p.add_argument("--policy-file", metavar="FILE",
                   help="oslo.policy rules (YAML or JSON) overriding the built-in defaults")
    p.add_argument("--vlan-range-start", type=int, help=argparse.SUPPRESS)
    p.add_argument("--vlan-range-end", type=int, help=argparse.SUPPRESS)
    p.add_argument("--log-level", help="debug, info, warning (default info)")
    p.add_argument("command", nargs="*", help="optional: `db upgrade`")
    return p


def load_settings(args: argparse.Namespace) -> Settings:
    file_values = read_config_file(args.config) if args.config else {}
    overrides = {
        "host": args.host, "port": args.port, "db_url": args.db_url,
        "tokens_file": args.tokens_file, "auth_strategy": args.auth_strategy,
        "policy_file": args.policy_file,
        "vlan_range_start": args.vlan_range_start,
        "vlan_range_end": args.vlan_range_end, "log_level": args.log_level,
    }
    return build_settings(file_values, overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in ([], ["db", "upgrade"]):
        print(f"taas-server: unknown command {' '.join(args.command)!r}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"taas-server: configuration error: {exc}", file=sys.stderr)
        return 2
    from taas.server.api.middleware import install_request_id_logging

    install_request_id_logging()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
    )
    from taas.server.db.migrations import is_current, upgrade
    from taas.server.db.session import Database

    db = Database(settings.db_url)
    try:
        # A start on a current schema skips Alembic altogether (fast restarts).
        if args.command or not is_current(db.engine):
            upgrade(db.engine)
    except Exception as exc:  # noqa: BLE001 - a clear message beats a traceback here
        print(f"taas-server: cannot migrate database {settings.db_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    if args.command:
        LOG.info("database %s is at the latest schema", settings.db_url)
        return 0

    from taas.server.api.app import create_app

    try:
        app = create_app(settings)
    except (ConfigError, ImportError, TypeError, AttributeError) as exc:
        print(f"taas-server: configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.auth_strategy == "noauth":
        LOG.warning(
            "auth_strategy=noauth: NO AUTHENTICATION. Every caller that can reach "
            "http://%s:%d is trusted: it is admin, or whatever project and roles its "
            "X-Project-Id/X-Roles headers claim (tokens are ignored). Use on trusted networks "
            "and labs only.", settings.host, settings.port)
    LOG.info("taas-server listening on http://%s:%d", settings.host, settings.port)
    serve(app, settings)
    return 0


KEEP_ALIVE = 75  # seconds an idle HTTP connection stays open


def serve(app: Any, settings: Settings) -> None:
    """Run uvicorn; SIGTERM/SIGINT first wake every pending long-poll so that they answer at
    once and the server stops in well under a second instead of waiting for them."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            app.state.notifier.close()

    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level=settings.log_level.lower(), access_log=False,
                            # Longer than the agents' 10 s heartbeat: their kept-alive
                            # connection is never closed under them between two calls.
                            timeout_keep_alive=KEEP_ALIVE,
                            # Backstop: a request still running after this is cancelled.
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    Server(config).run()


if __name__ == "__main__":
    sys.exit(main())
