"""taas-server settings: defaults, config file (YAML, JSON or INI) and validation."""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from taas.common.vlans import DEAD_VLAN, MIRROR_VLAN_FIRST, TAAS_ID_END

DEFAULT_DB_URL = "sqlite:///./taas.sqlite"
PORT_BACKENDS = ("builtin", "neutron")
AUTH_STRATEGIES = ("token", "noauth", "keystone")
QUOTA_RESOURCES = ("tap_service", "tap_flow", "tap_mirror", "tap_filter", "tap_filter_rule")


class ConfigError(Exception):
    """A setting is missing, malformed or out of range."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 9696
    db_url: str = DEFAULT_DB_URL
    tokens_file: str | None = None
    # "token" (X-Auth-Token from tokens_file), "keystone" (X-Auth-Token validated by a
    # Keystone v3) or "noauth" (trust every caller; labs only).
    auth_strategy: str = "token"
    # Keystone: where tokens are validated and who validates them (a service user with the
    # admin or service role, or a static service token). Validations are cached for
    # keystone_cache_ttl seconds: a revoked token keeps working at most that long.
    keystone_auth_url: str | None = None
    keystone_username: str | None = None
    keystone_password: str | None = None
    keystone_project_name: str = "service"
    keystone_user_domain_name: str = "Default"
    keystone_project_domain_name: str = "Default"
    keystone_service_token: str | None = None
    keystone_cache_ttl: float = 60.0
    keystone_timeout: float = 30.0
    # oslo.policy file (YAML/JSON) whose rules override the defaults of taas/server/policy.py.
    policy_file: str | None = None
    # Per-project limits (-1: unlimited), changed per project through /v2.0/quotas.
    quota_tap_service: int = 5
    quota_tap_flow: int = 50
    quota_tap_mirror: int = 5
    # Filters, and rules summed over all of a project's filters (Neutron's security_group /
    # security_group_rule defaults; one filter still holds at most 100 rules).
    quota_tap_filter: int = 10
    quota_tap_filter_rule: int = 100
    vlan_range_start: int = 3900
    vlan_range_end: int = 4000
    tunnel_key_base: int = 16_000_000
    agent_down_time: int = 30
    # "module:Class" of the service driver; the default computes hosts' desired states.
    service_driver: str = "taas.server.drivers.default:DefaultDriver"
    # Seconds between a long-poll's safety re-reads of its host's revision. Wake-ups are
    # reliable (local commits; PostgreSQL NOTIFY across replicas), so by default the long-poll
    # timeout; lower it only for replicas that share a database without LISTEN/NOTIFY.
    revision_poll_interval: float = 60.0
    log_level: str = "info"
    # Base URL clients reach this server at (behind a proxy or on a wildcard bind); discovery
    # and pagination links are built from it, never from the request's Host header.
    # Default: http://<host>:<port> of the bind address.
    public_endpoint: str | None = None
    # Seconds a write waits for another process's SQLite lock before giving up (then 503).
    sqlite_busy_timeout: float = 30.0
    # Where networks and ports come from: "builtin" (the server's own /v2.0/networks and
    # /v2.0/ports) or "neutron" (read from neutron-server, see taas/server/ports/neutron.py).
    port_backend: str = "builtin"
    # neutron-server's endpoint; without it, found in the Keystone catalog (service type
    # `network`, neutron_interface, neutron_region_name) with the credentials below.
    neutron_url: str | None = None
    # Credentials for neutron-server, as Nova's [neutron] section: a Keystone user (password
    # auth through keystoneauth1, token renewed by its session) with the admin role (taas reads
    # provider:segmentation_id and binding:host_id), or a static token (neutron_token), or
    # nothing (Neutron's noauth). In an INI file: section [neutron] with auth_url, username...
    neutron_auth_url: str | None = None
    neutron_username: str | None = None
    neutron_password: str | None = None
    neutron_project_name: str = "service"
    neutron_user_domain_name: str = "Default"
    neutron_project_domain_name: str = "Default"
    neutron_region_name: str | None = None
    neutron_interface: str = "internal,public"  # catalog interfaces, in order of preference
    neutron_token: str | None = None
    neutron_timeout: float = 30.0
    # RabbitMQ URL of Neutron's notifications (oslo.messaging "messagingv2" driver); without it
    # changes are only picked up by the periodic full resync.
    neutron_transport_url: str | None = None
    neutron_exchange: str = "neutron"
    neutron_resync_interval: float = 60.0
    # Agents send their counters at most this often, and only what changed (0: no counters).
    counters_interval: float = 5.0
    # A separate, unauthenticated Prometheus listener on this port (on `host`); None: only
    # the admin-only GET /metrics on the API port.
    metrics_port: int | None = None

    def validate(self) -> None:
        # [start, end) must stay below the agents' tap mirror VLANs (and the dead VLAN).
        if not (1 <= self.vlan_range_start < self.vlan_range_end <= TAAS_ID_END):
            raise ConfigError(
                f"vlan_range_start/vlan_range_end must satisfy 1 <= start < end <= {TAAS_ID_END} "
                f"({MIRROR_VLAN_FIRST}..{DEAD_VLAN} are reserved by the agents), got "
                f"{self.vlan_range_start}..{self.vlan_range_end}"
            )
        if not (0 < self.tunnel_key_base and self.tunnel_key_base + 4095 < 2**24):
            raise ConfigError("tunnel_key_base must keep tunnel_key_base + 4095 below 2**24")
        if self.agent_down_time <= 0:
            raise ConfigError("agent_down_time must be positive")
        if self.auth_strategy not in AUTH_STRATEGIES:
            raise ConfigError(f"auth_strategy must be one of {', '.join(AUTH_STRATEGIES)}, "
                              f"got {self.auth_strategy!r}")
        if self.port_backend not in PORT_BACKENDS:
            raise ConfigError(f"port_backend must be one of {', '.join(PORT_BACKENDS)}, "
                              f"got {self.port_backend!r}")
        if self.port_backend == "neutron":
            if not self.neutron_url and not self.neutron_auth_url:
                raise ConfigError("port_backend = neutron needs neutron_url, or neutron_auth_url "
                                  "and credentials to find it in the Keystone catalog")
            if self.neutron_auth_url and not (self.neutron_username and self.neutron_password):
                raise ConfigError("neutron_auth_url needs neutron_username and neutron_password")
            if self.neutron_token and not self.neutron_url:
                raise ConfigError("neutron_token needs neutron_url")
        if self.neutron_timeout <= 0:
            raise ConfigError("neutron_timeout must be positive")
        if self.neutron_resync_interval <= 0:
            raise ConfigError("neutron_resync_interval must be positive")
        if self.auth_strategy == "keystone":
            if not self.keystone_auth_url:
                raise ConfigError("auth_strategy keystone needs keystone_auth_url")
            if not self.keystone_service_token and not (
                    self.keystone_username and self.keystone_password):
                raise ConfigError("auth_strategy keystone needs keystone_username and "
                                  "keystone_password (a service user) or keystone_service_token")
        if self.keystone_cache_ttl < 0 or self.keystone_timeout <= 0:
            raise ConfigError("keystone_cache_ttl must be >= 0 and keystone_timeout > 0")
        for resource in QUOTA_RESOURCES:
            if getattr(self, f"quota_{resource}") < -1:
                raise ConfigError(f"quota_{resource} must be -1 (unlimited) or >= 0")
        if not 0 <= self.counters_interval <= 3600:
            raise ConfigError("counters_interval must be within 0..3600 seconds")
        if self.metrics_port is not None and not (0 < self.metrics_port < 65536):
            raise ConfigError(f"metrics_port must be 1..65535, got {self.metrics_port}")
        if not (0 < self.port < 65536):
            raise ConfigError(f"port must be 1..65535, got {self.port}")
        if self.public_endpoint is not None:
            url = urlsplit(self.public_endpoint)
            if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
                raise ConfigError("public_endpoint must be an http(s) URL without query, like "
                                  f"https://taas.example.org:9696, got {self.public_endpoint!r}")
        if self.sqlite_busy_timeout <= 0:
            raise ConfigError("sqlite_busy_timeout must be positive")

    @property
    def endpoint(self) -> str:
        """The public base URL, without a trailing slash."""
        if self.public_endpoint:
            return self.public_endpoint.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def taas_vni_range(self) -> range:
        """Tunnel keys reserved for tap services; tenant networks may not use them."""
        return range(
            self.tunnel_key_base + self.vlan_range_start, self.tunnel_key_base + self.vlan_range_end
        )


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind == "int | None" and value in (None, ""):
            return None
        if kind in ("int", "int | None"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if value is None:
            return None
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({kind} expected)") from None


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Sections name their settings' prefix: {"neutron": {"auth_url": u}} is neutron_auth_url
    (like Nova's and Neutron's [neutron] / [keystone_authtoken] sections)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if isinstance(v, dict):
            out.update({f"{key}_{sub}": val for sub, val in _flatten(v).items()})
        else:
            out[key] = v
    return out


def read_config_file(path: str) -> dict[str, Any]:
    """Settings from a YAML, JSON or INI file (INI: section [taas] or [DEFAULT]; any other
    section [x] holds settings x_*, e.g. [neutron] auth_url = neutron_auth_url)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    data: Any
    if p.suffix in (".ini", ".conf", ".cfg"):
        # No default section: [DEFAULT] is an ordinary one (its values must not leak into
        # [neutron] and the like).
        parser = configparser.ConfigParser(default_section="\0")
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        main = ("DEFAULT", "taas")
        data = {k: v for sec in main if parser.has_section(sec) for k, v in parser[sec].items()}
        data.update({sec: dict(parser[sec]) for sec in parser.sections() if sec not in main})
    else:
        import yaml  # here: not every start needs it (start-up time)

        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings")
    return _flatten(data)


def build_settings(file_values: dict[str, Any], overrides: dict[str, Any]) -> Settings:
    """Defaults <- config file <- command line (None means not given); validated."""
    merged: dict[str, Any] = {}
    for source in (file_values, {k: v for k, v in overrides.items() if v is not None}):
        for name, value in source.items():
            if name not in _FIELD_TYPES:
                raise ConfigError(f"unknown setting {name!r}")
            merged[name] = _coerce(name, value)
    settings = Settings(**merged)
    settings.validate()
    return settings
