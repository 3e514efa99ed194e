"""A persistent OpenFlow 1.4 connection to one bridge (no process per request).

Just what the driver's frequent calls need: aggregate-stats reads (how many flows carry our
cookie) and bundles of flow mods (encoded by ``ofwire``).
"""

from __future__ import annotations

import socket
import struct
import threading

from taas.agent.ovs import ofwire
from taas.agent.ovs.tool import SwitchError

# OpenFlow 1.4 wire format, just what an aggregate-stats read needs.
_OFP_VERSION = 0x05
_OFPT_HELLO, _OFPT_ERROR, _OFPT_ECHO_REQUEST, _OFPT_ECHO_REPLY = 0, 1, 2, 3
_OFPT_MULTIPART_REQUEST, _OFPT_MULTIPART_REPLY = 18, 19
_OFPMP_AGGREGATE = 2
_OFPTT_ALL, _OFPP_ANY, _OFPG_ANY = 0xFF, 0xFFFFFFFF, 0xFFFFFFFF
_HEADER = struct.Struct("!BBHI")
_OFPHET_VERSIONBITMAP = 1


def _speaks_14(version: int, hello_body: bytes) -> bool:
    """Whether a switch's HELLO admits OpenFlow 1.4: its highest version is at least 1.4 and
    its version bitmap (if it sent one) includes 1.4."""
    if version < _OFP_VERSION:
        return False
    off = 0
    while off + 4 <= len(hello_body):
        etype, elen = struct.unpack_from("!HH", hello_body, off)
        if elen < 4:
            break
        if etype == _OFPHET_VERSIONBITMAP and elen >= 8:
            (bitmap,) = struct.unpack_from("!I", hello_body, off + 4)
            return bool(bitmap & (1 << _OFP_VERSION))
        off += (elen + 7) // 8 * 8
    return True


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
        version, mtype, length, _ = _HEADER.unpack(self._recv_exact(_HEADER.size))
        body = self._recv_exact(length - _HEADER.size)
        if mtype != _OFPT_HELLO:
            raise ConnectionError(f"expected HELLO from the switch, got type {mtype}")
        if not _speaks_14(version, body):
            self._close()
            raise SwitchError(f"{self.path}: the switch does not speak OpenFlow 1.4 (HELLO "
                              f"version {version:#x}; check the bridge's protocols column)")

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
