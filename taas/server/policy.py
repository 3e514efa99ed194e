"""Who may do what: every rule in one place, with Neutron's secure-RBAC defaults (oslo.policy).

An operator's policy file (setting `policy_file`, YAML or JSON, oslo.policy's format) overrides
any rule by name, e.g. `create_tap_flow: "rule:admin_only"`; `sample()` lists every default.

Targets are dicts of the resource (`project_id`, `tenant_id`, and for ports
`network:project_id`/`network:tenant_id` of the port's network); credentials are the caller's
`project_id`, `roles` and `user_id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_policy import policy

from taas.server.config import ConfigError

ADMIN = "rule:admin_only"
MEMBER = "role:member and project_id:%(project_id)s"
READER = "role:reader and project_id:%(project_id)s"
ADMIN_OR_MEMBER = f"({ADMIN}) or ({MEMBER})"
ADMIN_OR_READER = f"({ADMIN}) or ({READER})"
# A member of the project that owns the port's network (Neutron's network owner).
ADMIN_OR_NETWORK_OWNER = f"({ADMIN}) or (role:member and project_id:%(network:project_id)s)"

TAP_KINDS = ("tap_service", "tap_flow", "tap_mirror", "tap_filter")
INVENTORY_KINDS = ("network", "port")

# Attributes whose use needs more than the resource's own create/update rule.
ATTRIBUTE_RULES: dict[str, str] = {
    "create_network:id": ADMIN,  # taas extension: the lab registers fixed ids
    "create_network:provider:network_type": ADMIN,
    "create_network:provider:segmentation_id": ADMIN,
    "create_network:provider:physical_network": ADMIN,
    "create_network:shared": ADMIN,
    "update_network:provider:network_type": ADMIN,
    "update_network:provider:segmentation_id": ADMIN,
    "update_network:provider:physical_network": ADMIN,
    "create_port:id": ADMIN,  # taas extension, as create_network:id
    "create_port:mac_address": ADMIN_OR_NETWORK_OWNER,
    "create_port:fixed_ips": ADMIN_OR_NETWORK_OWNER,
    "create_port:binding:host_id": ADMIN,
    "create_port:binding:profile": ADMIN,
    "update_port:binding:host_id": ADMIN,
    "update_port:binding:profile": ADMIN,
    "update_port:fixed_ips": ADMIN_OR_NETWORK_OWNER,
}


def _defaults() -> list[policy.RuleDefault]:
    rules = [
        policy.RuleDefault("context_is_admin", "role:admin", "Cloud administrator"),
        policy.RuleDefault("admin_only", "rule:context_is_admin", "Admin only"),
        policy.RuleDefault("taas_agent", "role:service or rule:context_is_admin",
                           "The agent-facing API (/v2.0/taas-agents)"),
        policy.RuleDefault("get_agent", ADMIN, "List/show agents"),
        policy.RuleDefault("delete_agent", ADMIN, "Forget a dead agent"),
        policy.RuleDefault("get_metrics", ADMIN, "Prometheus metrics of every project (GET "
                           "/metrics)"),
        policy.RuleDefault("get_quota", ADMIN_OR_READER, "Show a project's quotas"),
        policy.RuleDefault("update_quota", ADMIN, "Set a project's quotas"),
        policy.RuleDefault("delete_quota", ADMIN, "Reset a project's quotas"),
    ]
    for kind in (*TAP_KINDS, *INVENTORY_KINDS):
        rules += [
            policy.RuleDefault(f"create_{kind}", ADMIN_OR_MEMBER, f"Create a {kind}"),
            policy.RuleDefault(f"get_{kind}", ADMIN_OR_READER, f"Show or list {kind}s"),
            policy.RuleDefault(f"update_{kind}", ADMIN_OR_MEMBER, f"Update a {kind}"),
            policy.RuleDefault(f"delete_{kind}", ADMIN_OR_MEMBER, f"Delete a {kind}"),
        ]
    rules += [policy.RuleDefault(name, check, name) for name, check in ATTRIBUTE_RULES.items()]
    return rules


NO_FILE = "/nonexistent/taas-policy.yaml"  # no operator file: the defaults alone
DECIDED_SIZE = 10_000  # remembered decisions (the agents' checks repeat at every call)


def _key(rule: str, target: Mapping[str, Any], creds: Mapping[str, Any]) -> Any:
    """A hashable form of a check's inputs (lists as tuples); None if a value is not."""
    def frozen(doc: Mapping[str, Any]) -> frozenset[tuple[str, Any]]:
        return frozenset((k, tuple(v) if isinstance(v, list) else v) for k, v in doc.items())

    try:
        return rule, frozen(target), frozen(creds)
    except TypeError:
        return None


class Policy:
    """The enforcer of one server (one per app: tests run servers with different files)."""

    def __init__(self, policy_file: str | None = None) -> None:
        if policy_file is not None and not Path(policy_file).is_file():
            raise ConfigError(f"policy_file {policy_file} does not exist")
        conf = cfg.ConfigOpts()
        conf(args=[], project="taas", default_config_files=[], default_config_dirs=[])
        # An absolute path only: oslo.policy would otherwise search /etc/taas and the like.
        path = str(Path(policy_file).resolve()) if policy_file else NO_FILE
        self._enforcer = policy.Enforcer(conf, policy_file=path)
        conf.set_override("policy_dirs", [], group="oslo_policy")
        self._enforcer.register_defaults(_defaults())
        try:
            self._enforcer.load_rules()
        except Exception as exc:  # noqa: BLE001 - oslo.policy raises several kinds
            raise ConfigError(f"cannot load policy_file {policy_file}: {exc}") from None
        # Decisions of the defaults, which never change: a check is pure in (rule, target,
        # credentials). (oslo.policy inspects each check's signature at every call.)
        self._decided: dict[Any, bool] = {}
        if policy_file is None:
            # No file to follow: the defaults never change. Else oslo.policy searches the
            # config dirs for NO_FILE at every check (a tenth of an idle server's CPU).
            self._enforcer.use_conf = False

    def check(self, rule: str, target: Mapping[str, Any], creds: Mapping[str, Any]) -> bool:
        key = _key(rule, target, creds) if not self._enforcer.use_conf else None
        if key is not None and (known := self._decided.get(key)) is not None:
            return known
        allowed = bool(self._enforcer.authorize(rule, dict(target), dict(creds)))
        if key is not None:
            if len(self._decided) >= DECIDED_SIZE:
                self._decided.clear()
            self._decided[key] = allowed
        return allowed

    def attribute_rules(self, action: str, attributes: Iterable[str]) -> list[str]:
        """The `<action>:<attribute>` rules that apply to the attributes a request sets."""
        return [f"{action}:{a}" for a in attributes if f"{action}:{a}" in ATTRIBUTE_RULES]

    @staticmethod
    def sample() -> str:
        """Every default rule as a YAML policy file (a starting point for operators)."""
        lines = []
        for rule in _defaults():
            lines += [f"# {rule.description}", f'#"{rule.name}": "{rule.check_str}"', ""]
        return "\n".join(lines)


_DEFAULT: Policy | None = None


def default_policy() -> Policy:
    """The built-in rules (no operator file), shared by contexts made without a server."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Policy()
    return _DEFAULT
