"""Tap filter rules -> OpenFlow matches of the FILTER table (pure; docs/pipeline.md).

Each rule becomes one or more matches (one per address family it may concern, times the
port-range prefixes), spelled as ``ovs-ofctl dump-flows`` prints them: ``tcp``/``udp6``/...
shorthands for dl_type+nw_proto, ``nw_src=10.0.0.0/24`` (no mask for a host), ports as
``tp_dst=80`` or ``tp_dst=0x50/0xfff0``. A bare key (``tcp``) has the value ``""``.
"""

from __future__ import annotations

import ipaddress
from itertools import product

from taas.common.desired_state import FilterRule

__all__ = ["FilterError", "ranges_to_masks", "rule_matches"]

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
# (IP version, protocol number) -> OVS's shorthand for dl_type+nw_proto.
_SHORT = {(4, 1): "icmp", (4, 6): "tcp", (4, 17): "udp", (4, 132): "sctp",
          (6, 58): "icmp6", (6, 6): "tcp6", (6, 17): "udp6", (6, 132): "sctp6"}
PORT_PROTOCOLS = frozenset({6, 17})


class FilterError(ValueError):
    """A rule the compiler cannot express (the server's validation should have refused it)."""


def ranges_to_masks(lo: int, hi: int, bits: int) -> list[tuple[int, int]]:
    """Cover the inclusive range [lo, hi] of ``bits``-bit values with (value, mask) prefixes."""
    full = (1 << bits) - 1
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << bits
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, full & ~(size - 1)))
        lo += size
    return out


def _port_pieces(field: str, spec: str | None) -> list[dict[str, str]]:
    if spec is None:
        return [{}]
    lo_s, _, hi_s = spec.partition("-")
    lo, hi = int(lo_s), int(hi_s or lo_s)
    if not 0 <= lo <= hi <= 0xFFFF:
        raise FilterError(f"port range {spec!r}")
    if (lo, hi) == (0, 0xFFFF):
        return [{}]
    return [{field: str(v) if m == 0xFFFF else f"{v:#x}/{m:#x}"}
            for v, m in ranges_to_masks(lo, hi, 16)]


def _protocol(rule: FilterRule) -> int | None:
    p = rule.protocol
    if p is None:
        return None
    return PROTOCOLS[p] if p in PROTOCOLS else int(p)


def _families(rule: FilterRule, proto: int | None) -> list[int]:
    nets = [ipaddress.ip_network(p, strict=False) for p in
            (rule.source_ip_prefix, rule.destination_ip_prefix) if p]
    fams = {4, 6}
    if rule.ethertype:
        fams &= {4 if rule.ethertype == "IPv4" else 6}
    for n in nets:
        fams &= {n.version}
    if rule.protocol == "icmp":
        fams &= {4}
    elif rule.protocol == "icmpv6":
        fams &= {6}
    if not fams:
        raise FilterError("its ethertype, protocol and prefixes name different IP versions")
    return sorted(fams)


def _prefix(version: int, field: str, prefix: str | None) -> dict[str, str]:
    if not prefix:
        return {}
    net = ipaddress.ip_network(prefix, strict=False)
    if net.prefixlen == 0:
        return {}
    key = ("nw_" if version == 4 else "ipv6_") + field
    value = str(net.network_address)
    if net.prefixlen != net.max_prefixlen:
        value += f"/{net.prefixlen}"
    return {key: value}


def rule_matches(rule: FilterRule) -> list[dict[str, str]]:
    """The matches (without the filter's register) of the frames one rule concerns."""
    if all(v is None for v in (rule.ethertype, rule.protocol, rule.source_ip_prefix,
                               rule.destination_ip_prefix, rule.source_port_range,
                               rule.destination_port_range)):
        return [{}]  # every frame, IP or not
    proto = _protocol(rule)
    if proto is not None and not 0 <= proto <= 255:
        raise FilterError(f"protocol {rule.protocol!r}")
    has_ports = rule.source_port_range is not None or rule.destination_port_range is not None
    if has_ports and proto not in PORT_PROTOCOLS:
        raise FilterError("port ranges need protocol tcp or udp")
    out: list[dict[str, str]] = []
    for v in _families(rule, proto):
        if proto is None:
            base = {"ip" if v == 4 else "ipv6": ""}
        elif (v, proto) in _SHORT:
            base = {_SHORT[(v, proto)]: ""}
        else:
            base = {"ip" if v == 4 else "ipv6": "", "nw_proto": str(proto)}
        base |= _prefix(v, "src", rule.source_ip_prefix)
        base |= _prefix(v, "dst", rule.destination_ip_prefix)
        for s, d in product(_port_pieces("tp_src", rule.source_port_range),
                            _port_pieces("tp_dst", rule.destination_port_range)):
            out.append(base | s | d)
    return out
