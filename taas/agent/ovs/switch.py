"""All switch I/O of the OVS driver.

Everything else in the driver is pure. OpenFlow: one version (OpenFlow 1.4, the first with
bundles) for dumps and writes alike, so flows read back exactly as the compiler spells them.
Dumps and bundles go through ``ovs-ofctl``; the cheap, frequent reads (how many taas flows a
bridge holds, is the canary there) through one persistent OpenFlow connection per bridge
(``OpenFlowConn``: a few bytes each way, no process). OVSDB: reads from a replica kept current by
the OVS Python IDL (``OvsdbView``, one connection), writes as one ovs-vsctl transaction per
change (``--may-exist``/``--if-exists``: idempotent), which is rare (setup, tap-mirror ports).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taas.agent.ovs import ofwire
from taas.agent.ovs.flows import Flow, parse_dump_line
from taas.agent.ovs.tables import COOKIE

LOG = logging.getLogger(__name__)
OF_VERSION = "OpenFlow14"
# Bundles up to this many flow mods are encoded here and sent over the persistent connection
# (an incremental change: no process); bigger ones go through ovs-ofctl.
NATIVE_BUNDLE_MAX = 500


class SwitchError(RuntimeError):
    """A command to OVS failed."""


def _run(args: list[str], timeout: float = 60) -> str:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SwitchError(f"{args[0]} timed out: {' '.join(args[1:4])}") from e
    if res.returncode != 0:
        raise SwitchError(f"{' '.join(args[:4])}...: {res.stderr.strip()[:2000]}")
    return res.stdout


class OpenFlowBridge:
    """One bridge's OpenFlow tables, reached through ``unix:<rundir>/<bridge>.mgmt``."""

    def __init__(self, rundir: str, bridge: str) -> None:
        self.bridge = bridge
        self.path = f"{os.path.join(rundir, bridge)}.mgmt"
        self.target = f"unix:{self.path}"
        self.conn = OpenFlowConn(self.path)

    def dump(self, table: int | None = None) -> set[Flow]:
        """The flows carrying the taas cookie (only those: other cookies are not ours)."""
        spec = f"cookie={COOKIE:#x}/-1" + (f",table={table}" if table is not None else "")
        out = _run(["ovs-ofctl", "--no-names", "--no-stats", "-O", OF_VERSION,
                    "dump-flows", self.target, spec])
        flows: set[Flow] = set()
        for line in out.splitlines():
            parsed = parse_dump_line(line)
            if parsed and parsed[0] == COOKIE:
                flows.add(parsed[1])
        return flows

    def count(self, table: int | None = None) -> int:
        """How many flows carry the taas cookie (one aggregate request, no process)."""
        return self.conn.flow_count(COOKIE, table)

    def count_by_ofctl(self) -> int:
        """The same through ``ovs-ofctl dump-aggregate`` (the benchmark's reference)."""
        out = _run(["ovs-ofctl", "-O", OF_VERSION, "dump-aggregate", self.target,
                    f"cookie={COOKIE:#x}/-1"])
        m = re.search(r"flow_count=(\d+)", out)
        if not m:
            raise SwitchError(f"unexpected dump-aggregate answer: {out.strip()[:200]}")
        return int(m.group(1))

    def close(self) -> None:
        self.conn.close()

    def apply(self, delete: Iterable[Flow], add: Iterable[Flow]) -> None:
        """Deletes then adds, in one atomic bundle (nothing half-installed is ever visible).

        Up to ``NATIVE_BUNDLE_MAX`` flows whose text is in the vocabulary of ``ofwire`` (all
        that ``compile.py`` writes, with the default continuation) go over the bridge's
        persistent OpenFlow connection; anything else through ``ovs-ofctl --bundle``.
        """
        delete, add = list(delete), list(add)
        if not delete and not add:
            return
        if len(delete) + len(add) > NATIVE_BUNDLE_MAX:
            # A big bundle (full resync) is parsed faster by ovs-ofctl's C than encoded here;
            # its process start-up is small next to the work.
            return self.apply_by_ofctl(delete, add)
        try:
            msgs = ([ofwire.encode_flow_mod(f, ofwire.OFPFC_DELETE_STRICT, COOKIE, 0)
                     for f in delete]
                    + [ofwire.encode_flow_mod(f, ofwire.OFPFC_ADD, COOKIE, 0) for f in add])
        except (ofwire.Unsupported, ValueError) as e:
            LOG.debug("%s: %s; bundle through ovs-ofctl", self.bridge, e)
        else:
            self.conn.bundle(msgs)
            return
        self.apply_by_ofctl(delete, add)

    def apply_by_ofctl(self, delete: Iterable[Flow], add: Iterable[Flow]) -> None:
        """The same bundle through ``ovs-ofctl --bundle add-flows`` (parses any flow text)."""
        # (sorted as text: a stable file, and far cheaper than ordering Flow objects)
        lines = sorted(f.delete_line() for f in delete) + sorted(f.add_line() for f in add)
        if not lines:
            return
        with tempfile.NamedTemporaryFile("w", prefix="taas-flows-", suffix=".txt") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            _run(["ovs-ofctl", "--bundle", "-O", OF_VERSION, "add-flows", self.target, fh.name])

# OpenFlow 1.4 wire format, just what an aggregate-stats read needs.
_OFP_VERSION = 0x05
_OFPT_HELLO, _OFPT_ERROR, _OFPT_ECHO_REQUEST, _OFPT_ECHO_REPLY = 0, 1, 2, 3
_OFPT_MULTIPART_REQUEST, _OFPT_MULTIPART_REPLY = 18, 19
_OFPMP_AGGREGATE = 2
_OFPTT_ALL, _OFPP_ANY, _OFPG_ANY = 0xFF, 0xFFFFFFFF, 0xFFFFFFFF
_HEADER = struct.Struct("!BBHI")


class OpenFlowConn:
    """A persistent OpenFlow 1.4 connection to a bridge's management socket.

    For aggregate-stats requests (how many flows carry a cookie, in one table or all) and
    bundles of flow mods: a few bytes each way, where ``ovs-ofctl`` costs a process (tens of
    ms on a loaded host). A broken connection (ovs-vswitchd restarted, bridge deleted) is
    re-opened once per call; failing that, ``SwitchError``. Replaying a bundle is harmless:
    strict deletes of absent flows do nothing, adds overwrite.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._xid = 0
        self._bundle_id = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the switch")
            buf += chunk
        return bytes(buf)

    def _recv(self) -> tuple[int, int, bytes]:
        _, mtype, length, xid = _HEADER.unpack(self._recv_exact(_HEADER.size))
        return mtype, xid, self._recv_exact(length - _HEADER.size)

    def _connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
            s.sendall(_HEADER.pack(_OFP_VERSION, _OFPT_HELLO, _HEADER.size, 0))
        except OSError:
            s.close()
            raise
        self._sock = s
        mtype, _, _ = self._recv()
        if mtype != _OFPT_HELLO:
            raise ConnectionError(f"expected HELLO from the switch, got type {mtype}")

    def _next_xid(self) -> int:
        self._xid = self._xid % 0xFFFFFFF + 1
        return self._xid

    def _await(self, xid: int, errors: list[tuple[int, int, int]] | None = None
               ) -> tuple[int, bytes]:
        """Read until the answer to ``xid``; errors for other xids go to ``errors``."""
        assert self._sock is not None
        while True:
            rtype, rxid, rbody = self._recv()
            if rtype == _OFPT_ECHO_REQUEST:  # the switch's liveness probe
                self._sock.sendall(_HEADER.pack(_OFP_VERSION, _OFPT_ECHO_REPLY,
                                                _HEADER.size + len(rbody), rxid) + rbody)
            elif rtype == _OFPT_ERROR and rxid != xid and errors is not None:
                errors.append((rxid, *struct.unpack_from("!HH", rbody)))
            elif rxid == xid and rtype == _OFPT_ERROR:
                etype, code = struct.unpack_from("!HH", rbody)
                raise SwitchError(f"{self.path}: OpenFlow error type {etype} code {code}")
            elif rxid == xid:
                return rtype, rbody
            # anything else (asynchronous messages) is not for us

    def _request(self, mtype: int, body: bytes) -> bytes:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        xid = self._next_xid()
        self._sock.sendall(_HEADER.pack(_OFP_VERSION, mtype, _HEADER.size + len(body), xid)
                           + body)
        return self._await(xid)[1]

    def bundle(self, msgs: list[bytes]) -> None:
        """Apply complete OpenFlow messages (flow mods) in one atomic, ordered bundle."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._bundle(msgs)
                except (OSError, ConnectionError, struct.error) as e:
                    self._close()
                    if attempt == 2:
                        raise SwitchError(f"{self.path}: {e}") from e

    def _bundle(self, msgs: list[bytes]) -> None:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        self._bundle_id = self._bundle_id % 0xFFFFFFF + 1
        bid, flags = self._bundle_id, ofwire.OFPBF_ATOMIC | ofwire.OFPBF_ORDERED
        xid = self._next_xid()
        self._sock.sendall(ofwire.bundle_control(bid, ofwire.OFPBCT_OPEN_REQUEST, flags, xid))
        self._await(xid)  # an error (e.g. bundles unsupported) raises SwitchError
        out = bytearray()
        for m in msgs:
            out += ofwire.bundle_add(bid, flags, m[:4] + struct.pack("!I", self._next_xid())
                                     + m[8:])
        # A barrier: every add has been checked by the switch once it answers, so an add it
        # refused is known before the commit (which would otherwise apply the others).
        xid = self._next_xid()
        out += ofwire.barrier(xid)
        self._sock.sendall(out)
        errors: list[tuple[int, int, int]] = []
        self._await(xid, errors)
        if errors:
            xid = self._next_xid()
            self._sock.sendall(ofwire.bundle_control(bid, ofwire.OFPBCT_DISCARD_REQUEST, flags,
                                                     xid))
            try:
                self._await(xid)
            except SwitchError:
                pass  # the switch may have dropped the bundle already
            _, etype, code = errors[0]
            raise SwitchError(f"{self.path}: bundle refused: OpenFlow error type {etype} "
                              f"code {code} ({len(errors)} messages refused)")
        xid = self._next_xid()
        self._sock.sendall(ofwire.bundle_control(bid, ofwire.OFPBCT_COMMIT_REQUEST, flags,
                                                 xid))
        self._await(xid)

    def flow_count(self, cookie: int, table: int | None = None) -> int:
        """How many flows (of ``table``, or all tables) carry exactly ``cookie``."""
        # ofp_multipart_request + ofp_aggregate_stats_request with an empty OXM match
        body = struct.pack("!HH4xB3xII4xQQHH4x", _OFPMP_AGGREGATE, 0,
                           _OFPTT_ALL if table is None else table, _OFPP_ANY, _OFPG_ANY,
                           cookie, 0xFFFFFFFFFFFFFFFF, 1, 4)
        with self._lock:
            for attempt in (1, 2):
                try:
                    reply = self._request(_OFPT_MULTIPART_REQUEST, body)
                    break
                except (OSError, ConnectionError, struct.error) as e:
                    self._close()
                    if attempt == 2:
                        raise SwitchError(f"{self.path}: {e}") from e
            mp_type, _, _, _, count = struct.unpack_from("!HH4xQQI", reply)
            if mp_type != _OFPMP_AGGREGATE:
                self._close()
                raise SwitchError(f"{self.path}: unexpected multipart reply {mp_type}")
            return count


def _atom(value: Any) -> Any:
    """Decode one OVSDB JSON datum (as ovs-vsctl --format=json prints it)."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, body = value
        if kind == "map":
            return {k: _atom(v) for k, v in body}
        if kind == "set":
            return [_atom(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


@dataclass(frozen=True)
class Iface:
    name: str
    type: str
    ofport: int | None
    options: dict[str, str]
    external_ids: dict[str, str]
    bridge: str | None


class Ovsdb:
    """The few OVSDB reads and writes the driver needs, through ovs-vsctl."""

    def __init__(self, db: str) -> None:
        self.db = db

    def vsctl(self, *args: str, wait: bool = True) -> str:
        base = ["ovs-vsctl", f"--db={self.db}", "--timeout=30"]
        if not wait:
            base.append("--no-wait")
        return _run(base + list(args))

    def _table(self, out: str) -> list[dict[str, Any]]:
        doc = json.loads(out)
        return [dict(zip(doc["headings"], (_atom(v) for v in row), strict=True))
                for row in doc["data"]]

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, Iface]]:
        """(bridges by name, interfaces by name) in one read transaction."""
        out = self.vsctl(
            "--format=json", "--", "--columns=_uuid,name,ports,datapath_type", "list", "Bridge",
            "--", "--columns=_uuid,name,interfaces", "list", "Port",
            "--", "--columns=_uuid,name,type,ofport,options,external_ids", "list", "Interface",
            wait=False)
        # ovs-vsctl prints one JSON document per command, one per line.
        docs = [line for line in out.splitlines() if line.strip()]
        bridges, ports, ifaces = (self._table(d) for d in docs)
        port_bridge = {p: b["name"] for b in bridges for p in _as_list(b["ports"])}
        iface_bridge = {i: port_bridge.get(p["_uuid"]) for p in ports
                        for i in _as_list(p["interfaces"])}
        by_name: dict[str, Iface] = {}
        for i in ifaces:
            ofport = i["ofport"]
            by_name[i["name"]] = Iface(
                name=i["name"], type=i["type"],
                ofport=ofport if isinstance(ofport, int) and ofport > 0 else None,
                options=dict(i["options"] or {}), external_ids=dict(i["external_ids"] or {}),
                bridge=iface_bridge.get(i["_uuid"]))
        return {b["name"]: b for b in bridges}, by_name

    def get(self, table: str, record: str, column: str) -> str:
        return self.vsctl("get", table, record, column, wait=False).strip()


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


_VIEW_COLUMNS = {
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "ofport", "options", "external_ids"],
}
_LOCAL_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsdbView:
    """The interfaces of every bridge, from a replica of OVSDB kept by the OVS Python IDL.

    One connection held by the driver; ``interfaces()`` first processes whatever updates
    ovsdb-server has sent (non-blocking), so a read costs no process and no round trip. Not
    ready (first connection, reconnecting after an OVSDB restart) or broken: ``None``, and the
    caller reads through ovs-vsctl instead. Used from one thread at a time (the driver's).
    """

    def __init__(self, db: str, ready_timeout: float = 2.0) -> None:
        self.db = db
        self.ready_timeout = ready_timeout
        self._idl: Any = None
        self._cache: tuple[int, int, dict[str, Iface]] | None = None

    def _open(self) -> Any:
        import ovs.db.idl

        try:
            from ovsdbapp.backend.ovs_idl import idlutils

            helper = idlutils.get_schema_helper(self.db, "Open_vSwitch")
        except Exception:  # noqa: BLE001 - server down right now: the local schema will do
            helper = ovs.db.idl.SchemaHelper(location=_LOCAL_SCHEMA)
        for table, columns in _VIEW_COLUMNS.items():
            helper.register_columns(table, columns)
        idl = ovs.db.idl.Idl(self.db, helper)
        idl._session.reconnect.set_backoff(100, 1000)  # an OVSDB restart is seen within ~1 s
        return idl

    def _ready(self, wait: float) -> bool:
        import ovs.poller

        idl = self._idl
        deadline = time.monotonic() + wait
        while True:
            for _ in range(1000):  # one run() handles at most 50 messages: drain them all
                seqno = idl.change_seqno
                idl.run()
                if idl.change_seqno == seqno:
                    break
            if idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING \
                    and idl.has_ever_connected():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller = ovs.poller.Poller()
            idl.wait(poller)
            poller.timer_wait(int(min(left, 0.05) * 1000) + 1)
            poller.block()

    def poll(self) -> None:
        """Process pending updates (keeps the connection drained between syncs)."""
        if self._idl is not None:
            try:
                self._idl.run()
            except Exception:  # noqa: BLE001 - the next read reconnects or falls back
                LOG.debug("OVSDB view: run failed", exc_info=True)

    def interfaces(self) -> dict[str, Iface] | None:
        """Interfaces by name (as ``Ovsdb.snapshot`` gives them), or None if not ready."""
        try:
            first = self._idl is None
            if first:
                self._idl = self._open()
            if not self._ready(self.ready_timeout if first else 0.0):
                return None
            idl = self._idl
            key = (idl._session.get_seqno(), idl.change_seqno)
            if self._cache is not None and self._cache[:2] == key:
                return self._cache[2]
            by_name: dict[str, Iface] = {}
            for br in idl.tables["Bridge"].rows.values():
                for port in br.ports:
                    for i in port.interfaces:
                        ofport = (i.ofport[0] if i.ofport else None) \
                            if isinstance(i.ofport, list) else i.ofport
                        by_name[i.name] = Iface(
                            name=i.name, type=i.type,
                            ofport=ofport if ofport is not None and ofport > 0 else None,
                            options=dict(i.options), external_ids=dict(i.external_ids),
                            bridge=br.name)
            # Interfaces on no bridge (being added or removed) count as on no bridge, as in
            # the ovs-vsctl snapshot.
            for i in idl.tables["Interface"].rows.values():
                if i.name not in by_name:
                    by_name[i.name] = Iface(i.name, i.type, None, dict(i.options),
                                            dict(i.external_ids), None)
            self._cache = (key[0], key[1], by_name)
            return by_name
        except Exception:  # noqa: BLE001 - never worse than the ovs-vsctl path
            LOG.warning("OVSDB view %s failed; reading through ovs-vsctl", self.db,
                        exc_info=True)
            self.close()
            return None

    def close(self) -> None:
        if self._idl is not None:
            try:
                self._idl.close()
            except Exception:  # noqa: BLE001
                pass
            self._idl = None
            self._cache = None
