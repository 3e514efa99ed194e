"""Validation of request attributes: pure functions, InvalidInput on bad input."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taas.common.vlans import VlanFilterError, parse_vlan_filter
from taas.server.services.errors import InvalidInput

Validator = Callable[[str, Any], Any]

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MAX_TUNNEL_ID = 2**32 - 1


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(name: str, value: str, max_len: int) -> str:
    """Length (in characters, as both databases count) and content every stored string needs:
    no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8: no database stores it)."""
    if len(value) > max_len:
        raise InvalidInput(f"'{name}' is longer than {max_len} characters")
    if "\x00" in value:
        raise InvalidInput(f"'{name}' must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"'{name}' is not valid Unicode (lone surrogate)") from None
    return value


def _limited(check: Validator, max_len: int) -> Validator:
    """Tag a validator with the longest string it lets through (checked against the columns
    by the tests)."""
    check.max_len = max_len  # type: ignore[attr-defined]
    return check


def string(max_len: int) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidInput(f"'{name}' must be a string, got {_type_name(value)}")
        return _text(name, value, max_len)

    return _limited(check, max_len)


def uuid_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a UUID string, got {_type_name(value)}")
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid UUID ({name})") from None
    if len(value) != 36:
        raise InvalidInput(f"'{value}' is not a valid UUID ({name}): use the 36-character form")
    return value.lower()


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"'{name}' must be a boolean, got {_type_name(value)}")


def one_of(*choices: str) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            if not choices:
                raise InvalidInput(f"'{name}' is not supported; leave it out or null")
            raise InvalidInput(f"'{name}' must be one of {', '.join(choices)}, got {value!r}")
        return value

    return _limited(check, max(map(len, choices), default=0))


def integer(low: int, high: int) -> Validator:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidInput(f"'{name}' must be an integer, got {_type_name(value)}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidInput(f"'{name}' must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise InvalidInput(f"'{name}' must be in {low}..{high}, got {number}")
        return number

    return check


MIN_SNAPLEN, MAX_SNAPLEN = 64, 65535
MAX_RATE = 2**32 - 1  # OpenFlow meter rates are 32-bit


def snaplen(name: str, value: Any) -> int | None:
    """Bytes of each copy kept (64-65535: an Ethernet minimum frame at least), null = all."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{name}' must be an integer number of bytes "
                           f"({MIN_SNAPLEN}-{MAX_SNAPLEN}) or null, got {_type_name(value)}")
    if not MIN_SNAPLEN <= value <= MAX_SNAPLEN:
        raise InvalidInput(f"'{name}' must be {MIN_SNAPLEN}-{MAX_SNAPLEN} bytes (null: whole "
                           f"frames), got {value}")
    return value


def rate(unit: str) -> Validator:
    """A positive rate in ``unit``, or null (unlimited)."""
    def check(name: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"'{name}' must be a positive integer ({unit}) or null, got "
                               f"{_type_name(value)}")
        if not 1 <= value <= MAX_RATE:
            raise InvalidInput(f"'{name}' must be a positive integer ({unit}) up to "
                               f"{MAX_RATE}, or null for no limit; got {value}")
        return value

    return check


VLAN_FILTER_LEN = 1024  # the column's length (as in the original)


def vlan_filter(name: str, value: Any) -> str | None:
    """The original's syntax ("10-20,30"), plus what it lacks: ids 0..4094 and low <= high."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string like '10-20,30', got {_type_name(value)}")
    _text(name, value, VLAN_FILTER_LEN)
    try:
        parse_vlan_filter(value)
    except VlanFilterError as e:
        raise InvalidInput(f"'{name}': {e}") from None
    return value


_TUNNEL_ID_RE = re.compile(r"\s*\+?[0-9]+\s*")


def tunnel_id(name: str, value: Any) -> int:
    """What the original's integer validator lets through: a JSON integer, an integral number
    (99.0) or a string of one ("99", as openstackclient's --directions IN=99 sends); stored and
    answered as an integer."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _TUNNEL_ID_RE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{name}' must be an integer, got {value!r}")
    if not 0 <= value <= MAX_TUNNEL_ID:
        raise InvalidInput(f"'{name}' must be in 0..{MAX_TUNNEL_ID}, got {value}")
    return value


def directions(name: str, value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise InvalidInput(
            f"'{name}' must be a non-empty object like {{\"IN\": 101, \"OUT\": 102}}"
        )
    out: dict[str, int] = {}
    for key, tunnel in value.items():
        if key not in ("IN", "OUT", "BOTH"):
            raise InvalidInput(f"'{name}': key {key!r} is not one of IN, OUT, BOTH")
        out[key] = tunnel_id(f"{name}.{key}", tunnel)
    if len(set(out.values())) != len(out):
        raise InvalidInput(f"'{name}': each direction needs its own tunnel id")
    return out


IP_LEN = 64  # the columns' length; a normalized address is at most 39 characters


def ip_address(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be an IP address string, got {_type_name(value)}")
    _text(name, value, IP_LEN)
    if "%" in value:
        raise InvalidInput(f"'{name}': scoped addresses ({value!r}) are not supported")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid IPv4 or IPv6 address ({name})") from None


_limited(vlan_filter, VLAN_FILTER_LEN)
_limited(ip_address, IP_LEN)
_limited(uuid_str, 36)
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


def remote_ip(name: str, value: Any) -> str:
    """A tunnel destination outside this cloud: never an address that means "this host",
    "everyone", or a link (metadata services live at 169.254.169.254)."""
    text = ip_address(name, value)
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    kind = ("unspecified" if addr.is_unspecified else "loopback" if addr.is_loopback
            else "multicast" if addr.is_multicast
            else "broadcast" if addr == ipaddress.IPv4Address("255.255.255.255")
            else "link-local" if any(addr in net for net in _LINK_LOCAL) else None)
    if kind is not None:
        raise InvalidInput(f"'{name}' {text} is a {kind} address; a tap mirror needs the "
                           "unicast address of a remote collector")
    return text


_limited(remote_ip, IP_LEN)


def address_forms(text: str) -> tuple[str, list[str]]:
    """A validated address's canonical form (IPv4 for an IPv4-mapped IPv6 one) and every
    spelling of it that a column may hold (10.0.0.1 and ::ffff:10.0.0.1 reach one host)."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    forms = [str(addr)]
    if isinstance(addr, ipaddress.IPv4Address):
        forms.append(str(ipaddress.IPv6Address(f"::ffff:{addr}")))
    return forms[0], forms


def mac_address(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
        raise InvalidInput(f"'{name}' must be a MAC address like fa:16:3e:00:00:01")
    return value.lower()


_limited(mac_address, 17)


def fixed_ips(name: str, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise InvalidInput(f"'{name}' must be a list")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"ip_address", "subnet_id"}:
            raise InvalidInput(f"'{name}' items must be objects with ip_address/subnet_id")
        entry = {}
        if "ip_address" in item:
            entry["ip_address"] = ip_address(f"{name}.ip_address", item["ip_address"])
        if "subnet_id" in item:
            entry["subnet_id"] = string(36)(f"{name}.subnet_id", item["subnet_id"])
        out.append(entry)
    return out


def not_shared(name: str, value: Any) -> bool:
    if value is not False:
        raise InvalidInput(f"'{name}': only unshared networks (false) are supported")
    return False


def nullable(inner: Validator) -> Validator:
    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    if hasattr(inner, "max_len"):
        _limited(check, inner.max_len)
    return check


MAX_FILTER_RULES = 100  # rules per tap filter
RULE_KEYS = ("priority", "action", "direction", "ethertype", "protocol", "source_ip_prefix",
             "destination_ip_prefix", "source_port_range", "destination_port_range")
PROTOCOL_NAMES = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_PORT_RANGE_RE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")


def _cidr(name: str, value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a CIDR string like 10.0.0.0/24, "
                           f"got {_type_name(value)}")
    _text(name, value, IP_LEN)
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid IPv4 or IPv6 CIDR ({name})") from None
    return str(net), net.version


def _port_range(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    m = _PORT_RANGE_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidInput(f"'{name}' must be a port \"N\" or a range \"N-M\", got {value!r}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 0 <= lo <= hi <= 65535:
        raise InvalidInput(f"'{name}' {value!r}: ports are 0-65535 and N <= M")
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _protocol(name: str, value: Any) -> str:
    if isinstance(value, str) and value in PROTOCOL_NAMES:
        return value
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit() \
            and 0 <= int(value) <= 255:
        return str(int(value))
    raise InvalidInput(f"'{name}' must be one of tcp, udp, icmp, icmpv6 or a number 0-255, "
                       f"got {value!r}")


def filter_rule(name: str, value: Any) -> dict[str, Any]:
    """One rule, every key present (None when not given), checked for consistency."""
    if not isinstance(value, dict):
        raise InvalidInput(f"'{name}' must be an object, got {_type_name(value)}")
    if unknown := sorted(set(value) - set(RULE_KEYS)):
        raise InvalidInput(f"'{name}': unknown key(s) {', '.join(map(repr, unknown))}; a rule "
                           f"has {', '.join(RULE_KEYS)}")
    r: dict[str, Any] = dict.fromkeys(RULE_KEYS)
    for key in ("priority", "action"):
        if value.get(key) is None:
            raise InvalidInput(f"'{name}': '{key}' is required")
    r["priority"] = integer(1, 1000)(f"{name}.priority", value["priority"])
    r["action"] = one_of("mirror", "skip")(f"{name}.action", value["action"])
    v = {k: x for k, x in value.items() if x is not None}
    if "direction" in v:
        r["direction"] = one_of("IN", "OUT")(f"{name}.direction", v["direction"])
    if "ethertype" in v:
        r["ethertype"] = one_of("IPv4", "IPv6")(f"{name}.ethertype", v["ethertype"])
    if "protocol" in v:
        r["protocol"] = _protocol(f"{name}.protocol", v["protocol"])
    versions = {4: "IPv4", 6: "IPv6"}
    family = r["ethertype"]
    for key in ("source_ip_prefix", "destination_ip_prefix"):
        if key in v:
            r[key], version = _cidr(f"{name}.{key}", v[key])
            if family is not None and family != versions[version]:
                raise InvalidInput(f"'{name}.{key}' {r[key]} is an {versions[version]} prefix "
                                   f"but the rule is for {family}")
            family = versions[version]
    proto = r["protocol"]
    if (proto == "icmp" and family == "IPv6") or (proto == "icmpv6" and family == "IPv4"):
        raise InvalidInput(f"'{name}': protocol {proto} does not exist in {family}")
    for key in ("source_port_range", "destination_port_range"):
        if key in v:
            if PROTOCOL_NAMES.get(proto, proto) not in (6, 17, "6", "17"):
                raise InvalidInput(f"'{name}.{key}': port ranges need protocol tcp or udp, "
                                   f"got {proto or 'none'}")
            r[key] = _port_range(f"{name}.{key}", v[key])
    return r


def filter_rules(name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidInput(f"'{name}' must be a list of rules, got {_type_name(value)}")
    if len(value) > MAX_FILTER_RULES:
        raise InvalidInput(f"'{name}': at most {MAX_FILTER_RULES} rules per tap filter")
    rules = [filter_rule(f"{name}[{i}]", r) for i, r in enumerate(value)]
    seen: set[int] = set()
    for r in rules:
        if r["priority"] in seen:
            raise InvalidInput(f"'{name}': priority {r['priority']} is used by two rules; "
                               "priorities are unique in a tap filter")
        seen.add(r["priority"])
    return sorted(rules, key=lambda r: r["priority"])


@dataclass(frozen=True)
class Attr:
    validate: Validator
    post: bool = True
    put: bool = False
    required: bool = False
    default: Any = None


NAME = Attr(string(255), put=True, default="")
DESCRIPTION = Attr(string(1024), put=True, default="")
PROJECT = Attr(string(255))
# What every tap resource carries, first in each table as Neutron lists it.
OWNED_AND_NAMED = {
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
}

# Rate limits (issue 10): a ceiling on the resource's copies; PUT may change them.
LIMITS = {
    "max_pps": Attr(rate("packets per second"), put=True),
    "max_kbps": Attr(rate("kbit per second"), put=True),
}
SNAPLEN = {"snaplen": Attr(snaplen, put=True)}
TAP_SERVICE = {
    **OWNED_AND_NAMED,
    "port_id": Attr(uuid_str, required=True),
    **LIMITS,
}
TAP_FLOW = {
    **OWNED_AND_NAMED,
    "tap_service_id": Attr(uuid_str, required=True),
    "source_port": Attr(uuid_str, required=True),
    "direction": Attr(one_of("IN", "OUT", "BOTH"), required=True),
    "vlan_filter": Attr(vlan_filter),
    "tap_filter_id": Attr(nullable(uuid_str), put=True),
    **SNAPLEN,
    **LIMITS,
}
TAP_FILTER = {
    **OWNED_AND_NAMED,
    "default_action": Attr(one_of("mirror", "skip"), put=True, default="skip"),
    "rules": Attr(filter_rules, put=True, default=[]),
}
TAP_MIRROR = {
    **OWNED_AND_NAMED,
    "port_id": Attr(uuid_str, required=True),
    "directions": Attr(directions, required=True),
    "remote_ip": Attr(remote_ip, required=True),
    "mirror_type": Attr(one_of("gre", "erspanv1"), required=True),
    **SNAPLEN,
    **LIMITS,
}
NETWORK = {
    "id": Attr(uuid_str),
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "admin_state_up": Attr(boolean, put=True, default=True),
    "shared": Attr(not_shared, default=False),
    "provider:network_type": Attr(one_of("vxlan"), default="vxlan"),
    "provider:segmentation_id": Attr(integer(1, 2**24 - 1)),
    "provider:physical_network": Attr(nullable(one_of())),
}
PORT = {
    "id": Attr(uuid_str),
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "network_id": Attr(uuid_str, required=True),
    "mac_address": Attr(mac_address),
    "binding:host_id": Attr(nullable(string(255)), put=True),
    "device_owner": Attr(string(255), put=True, default=""),
    "device_id": Attr(string(255), put=True, default=""),
    "admin_state_up": Attr(boolean, put=True, default=True),
    "fixed_ips": Attr(fixed_ips, put=True, default=[]),
}


def check_body(
    spec: dict[str, Attr], body: Any, *, update: bool = False, resource: str = "resource"
) -> dict[str, Any]:
    """Validated attributes of a create (defaults filled in) or update body."""
    if not isinstance(body, dict):
        raise InvalidInput(f"'{resource}' must be a JSON object, got {_type_name(body)}")
    out: dict[str, Any] = {}
    for key, value in body.items():
        attr = spec.get(key)
        if attr is None:
            raise InvalidInput(f"Unrecognized attribute(s) '{key}' for {resource}")
        if update and not attr.put:
            raise InvalidInput(f"Cannot update read-only attribute '{key}' of {resource}")
        out[key] = attr.validate(key, value)
    if not update:
        for key, attr in spec.items():
            if key in out:
                continue
            if attr.required:
                raise InvalidInput(f"Failed to parse request. Required attribute '{key}' not "
                                   f"specified for {resource}")
            if attr.default is not None or key in ("tenant_id", "project_id"):
                out.setdefault(key, attr.default)
    # An empty update is Neutron's no-op: 200 with the resource unchanged.
    return out
