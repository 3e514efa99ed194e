"""OpenFlow 1.4 wire encoding of the flows taas writes (for bundles sent without ovs-ofctl).

Only the vocabulary of ``compile.py`` is known: matches on in_port, dl_vlan / vlan_tci,
dl_dst, tun_id, pkt_mark and registers; actions output, output(port=P,max_len=N), IN_PORT,
NORMAL, drop, push_vlan, pop_vlan, set_field (vlan_vid, tun_id, pkt_mark, registers),
resubmit(,T), clone(...) and a leading meter:N (the meter instruction). ``encode_flow_mod``
returns None for anything else (e.g. an unusual ``continuation``), and the caller falls back
to ``ovs-ofctl``, which parses everything. Pure: no I/O.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from taas.agent.ovs.flows import Flow

VERSION = 0x05  # OpenFlow 1.4
HEADER = struct.Struct("!BBHI")
OFPT_ERROR = 1
OFPT_FLOW_MOD = 14
OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 20, 21
OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD_MESSAGE = 33, 34
OFPBCT_OPEN_REQUEST, OFPBCT_OPEN_REPLY = 0, 1
OFPBCT_COMMIT_REQUEST, OFPBCT_COMMIT_REPLY = 4, 5
OFPBCT_DISCARD_REQUEST = 6
OFPBF_ATOMIC, OFPBF_ORDERED = 1, 2
OFPFC_ADD, OFPFC_DELETE_STRICT = 0, 4

_OFPP_IN_PORT, _OFPP_NORMAL, _OFPP_ANY = 0xFFFFFFF8, 0xFFFFFFFA, 0xFFFFFFFF
_OFPG_ANY = 0xFFFFFFFF
_NO_BUFFER = 0xFFFFFFFF
_OFPIT_APPLY_ACTIONS, _OFPIT_METER = 4, 6
_OFPAT_OUTPUT, _OFPAT_PUSH_VLAN, _OFPAT_POP_VLAN, _OFPAT_SET_FIELD = 0, 17, 18, 25
_NX_VENDOR = 0x00002320
_NXAST_RESUBMIT_TABLE, _NXAST_OUTPUT_TRUNC, _NXAST_CLONE = 14, 39, 42
_OFPP10_IN_PORT = 0xFFF8  # resubmit's in_port field uses the 16-bit port space

# OXM (class, field, width in bytes) of the fields taas matches or sets.
_OXM_BASIC = 0x8000
_NXM1 = 0x0001
_FIELDS: dict[str, tuple[int, int, int]] = {
    "in_port": (_OXM_BASIC, 0, 4),
    "dl_dst": (_OXM_BASIC, 3, 6),
    "vlan_vid": (_OXM_BASIC, 6, 2),
    "tun_id": (_OXM_BASIC, 38, 8),
    "pkt_mark": (_NXM1, 33, 4),
    **{f"reg{i}": (_NXM1, i, 4) for i in range(16)},
}


class Unsupported(ValueError):
    """A flow outside the vocabulary above (the caller uses ovs-ofctl instead)."""


def _pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def _int(text: str) -> int:
    return int(text, 0)


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise Unsupported(f"bad MAC {text!r}")
    return bytes(int(p, 16) for p in parts)


def _oxm(name: str, value: bytes, mask: bytes | None = None) -> bytes:
    cls, field, width = _FIELDS[name]
    if len(value) != width or (mask is not None and len(mask) != width):
        raise Unsupported(f"bad width for {name}")
    length = width * 2 if mask is not None else width
    header = (cls << 16) | (field << 9) | ((mask is not None) << 8) | length
    return struct.pack("!I", header) + value + (mask or b"")


def _num(name: str, value: int) -> bytes:
    width = _FIELDS[name][2]
    if not 0 <= value < 1 << (8 * width):
        raise Unsupported(f"{name} value out of range")
    return value.to_bytes(width, "big")


def _match(tokens: tuple[str, ...]) -> bytes:
    body = b""
    for tok in tokens:
        k, _, v = tok.partition("=")
        value, _, mask = v.partition("/")
        if k == "dl_vlan":
            body += _oxm("vlan_vid", _num("vlan_vid", 0x1000 | _int(value)))
        elif k == "vlan_tci":  # only VLAN-id pieces (CFI set): what vlan_vid_match writes
            if not mask or not _int(value) & 0x1000 or _int(mask) & 0xE000:
                raise Unsupported(tok)
            body += _oxm("vlan_vid", _num("vlan_vid", _int(value)),
                         _num("vlan_vid", _int(mask)))
        elif k == "dl_dst":
            body += _oxm("dl_dst", _mac(value), _mac(mask) if mask else None)
        elif k in _FIELDS and k != "vlan_vid":
            body += _oxm(k, _num(k, _int(value)), _num(k, _int(mask)) if mask else None)
        else:
            raise Unsupported(tok)
    return _pad8(struct.pack("!HH", 1, 4 + len(body)) + body)  # OFPMT_OXM


def split_actions(text: str) -> list[str]:
    """Top-level comma-separated actions (commas inside parentheses stay)."""
    out: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [a.strip() for a in out if a.strip()]


def _output(port: int) -> bytes:
    return struct.pack("!HHIH6x", _OFPAT_OUTPUT, 16, port, 0)


def _action(a: str) -> bytes:
    if a == "NORMAL":
        return _output(_OFPP_NORMAL)
    if a == "IN_PORT":
        return _output(_OFPP_IN_PORT)
    if a.startswith("output:"):
        return _output(_int(a[7:]))
    if a.startswith("output(port=") and a.endswith(")"):
        port, sep, max_len = a[12:-1].partition(",max_len=")
        if not sep or not 0 < _int(port) < 0xFF00:
            raise Unsupported(a)
        return struct.pack("!HHIHHI", 0xFFFF, 16, _NX_VENDOR, _NXAST_OUTPUT_TRUNC, _int(port),
                           _int(max_len))
    if a == "pop_vlan":
        return struct.pack("!HH4x", _OFPAT_POP_VLAN, 8)
    if a.startswith("push_vlan:"):
        return struct.pack("!HHH2x", _OFPAT_PUSH_VLAN, 8, _int(a[10:]))
    if a.startswith("set_field:"):
        value, arrow, field = a[10:].partition("->")
        if not arrow or field not in _FIELDS or field in ("in_port", "dl_dst"):
            raise Unsupported(a)
        body = _oxm(field, _num(field, _int(value)))
        return _pad8(struct.pack("!HH", _OFPAT_SET_FIELD, len(_pad8(b"1234" + body))) + body)
    if a.startswith("resubmit(,") and a.endswith(")"):
        table = _int(a[10:-1])
        if not 0 <= table < 255:
            raise Unsupported(a)
        return struct.pack("!HHIHHB3x", 0xFFFF, 16, _NX_VENDOR, _NXAST_RESUBMIT_TABLE,
                           _OFPP10_IN_PORT, table)
    if a.startswith("clone(") and a.endswith(")"):
        inner = b"".join(_action(x) for x in split_actions(a[6:-1]))
        return struct.pack("!HHIH6x", 0xFFFF, 16 + len(inner), _NX_VENDOR, _NXAST_CLONE) + inner
    raise Unsupported(a)


@lru_cache(maxsize=4096)  # many flows share one action list (the same copies)
def _instructions(actions: str) -> bytes:
    if actions == "drop":
        return b""  # no instruction: the packet is dropped
    steps = split_actions(actions)
    meter = b""
    if steps[0].startswith("meter:"):  # an instruction of its own, before the actions
        meter = struct.pack("!HHI", _OFPIT_METER, 8, _int(steps.pop(0)[6:]))
    if any(a.startswith("meter:") for a in steps):
        raise Unsupported(actions)
    acts = b"".join(_action(a) for a in steps)
    return meter + struct.pack("!HH4x", _OFPIT_APPLY_ACTIONS, 8 + len(acts)) + acts


def encode_flow_mod(flow: Flow, command: int, cookie: int, xid: int) -> bytes:
    """One OFPT_FLOW_MOD: ADD with ``cookie``, or DELETE_STRICT without a cookie match
    (table + priority + match identify the flow; see ``Flow.spec``). Raises Unsupported."""
    body = struct.pack(
        "!QQBBHHHIIIHH",
        cookie if command == OFPFC_ADD else 0, 0,  # cookie, cookie_mask
        flow.table, command, 0, 0, flow.priority, _NO_BUFFER, _OFPP_ANY, _OFPG_ANY, 0, 0)
    body += _match(flow.match)
    if command == OFPFC_ADD:
        body += _instructions(flow.actions)
    length = HEADER.size + len(body)
    if length > 0xFFFF - 16:  # must fit inside a bundle-add message
        raise Unsupported("flow too large for one message")
    return HEADER.pack(VERSION, OFPT_FLOW_MOD, length, xid) + body


def bundle_control(bundle_id: int, ctype: int, flags: int, xid: int) -> bytes:
    return HEADER.pack(VERSION, OFPT_BUNDLE_CONTROL, 16, xid) + struct.pack(
        "!IHH", bundle_id, ctype, flags)


def bundle_add(bundle_id: int, flags: int, msg: bytes) -> bytes:
    """Wrap ``msg`` (a complete message) for the bundle; same xid as the message."""
    xid = HEADER.unpack_from(msg)[3]
    return HEADER.pack(VERSION, OFPT_BUNDLE_ADD_MESSAGE, 16 + len(msg), xid) + struct.pack(
        "!I2xH", bundle_id, flags) + msg


def barrier(xid: int) -> bytes:
    return HEADER.pack(VERSION, OFPT_BARRIER_REQUEST, HEADER.size, xid)
