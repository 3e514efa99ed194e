"""Port monitor: the VM ports on br-int, as OVSDB sees them, kept current by monitor updates.

One thread runs the OVS Python IDL (a replica of the Bridge/Port/Interface tables kept current
by ovsdb-server's monitor notifications, no polling). After each batch of updates it recomputes
the set of VM ports and hands it to a callback when it changed. A VM port is an Interface on a
Port of the integration bridge with ``external_ids:iface-id`` (Neutron's convention) whose
``ofport`` ovs-vswitchd has filled in; patch and tunnel interfaces are never VM ports.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ovs.db.idl
import ovs.poller
from ovsdbapp.backend.ovs_idl import idlutils

from taas.agent.ports import LocalPort, PortMap

LOG = logging.getLogger(__name__)

# Interface types that are never VM ports even if someone put an iface-id on them.
NON_VM_TYPES = frozenset({"patch", "vxlan", "gre", "geneve", "stt", "erspan", "ip6erspan",
                          "ip6gre", "lisp", "gtpu", "bareudp", "srv6"})
LOCAL_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
COLUMNS = {
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces", "tag"],
    "Interface": ["name", "type", "external_ids", "ofport", "mac_in_use"],
}


ChangeCallback = Callable[[PortMap, bool], None]


def _optional(value: Any) -> Any:
    """The IDL gives optional scalar columns as [] or [v]; accept plain values too."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def vm_ports_of(bridges: Any, int_br: str) -> PortMap:
    """Compute the VM ports of bridge ``int_br`` from IDL rows (pure, no I/O)."""
    found: dict[str, LocalPort] = {}
    for bridge in bridges:
        if bridge.name != int_br:
            continue
        for port in bridge.ports:
            tag = _optional(port.tag)
            for iface in port.interfaces:
                if iface.type in NON_VM_TYPES:
                    continue
                ext = dict(iface.external_ids)
                port_id = ext.get("iface-id")
                ofport = _optional(iface.ofport)
                if not port_id or ofport is None or int(ofport) <= 0:
                    continue  # not a VM port, or vswitchd has not attached it yet
                mac = ext.get("attached-mac") or _optional(iface.mac_in_use) or ""
                candidate = LocalPort(port_id, int(ofport), int(tag) if tag is not None else None,
                                   str(mac).lower(), iface.name)
                # Two interfaces claiming one iface-id (a move in progress): keep the newest.
                if port_id not in found or candidate.ofport > found[port_id].ofport:
                    found[port_id] = candidate
    return found


class PortMonitor:
    """Keeps the VM ports of one integration bridge and reports changes and reconnections."""

    def __init__(self, ovsdb: str, int_br: str, on_change: ChangeCallback,
                 max_backoff_ms: int = 1000) -> None:
        self.ovsdb = ovsdb
        self.int_br = int_br
        self._on_change = on_change
        self._max_backoff_ms = max_backoff_ms
        self._lock = threading.Lock()
        self._ports: PortMap = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times the IDL (re)connected and received the DB

    # -- public ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="port-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def wait_ready(self, timeout: float) -> bool:
        """True once the first copy of the database has arrived."""
        return self._ready.wait(timeout)

    def ports(self) -> PortMap:
        with self._lock:
            return dict(self._ports)

    # -- the IDL thread ----------------------------------------------------------------------
    def _schema_helper(self) -> ovs.db.idl.SchemaHelper:
        try:
            helper = idlutils.get_schema_helper(self.ovsdb, "Open_vSwitch")
        except Exception as exc:  # noqa: BLE001 - server down: the local copy is as good
            if not LOCAL_SCHEMA.exists():
                raise
            LOG.debug("schema from server failed (%s), using %s", exc, LOCAL_SCHEMA)
            helper = ovs.db.idl.SchemaHelper(location=str(LOCAL_SCHEMA))
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        return helper

    def _run(self) -> None:
        idl: ovs.db.idl.Idl | None = None
        while not self._stop.is_set():
            try:
                if idl is None:
                    idl = ovs.db.idl.Idl(self.ovsdb, self._schema_helper())
                    # The default backoff grows to 8 s; an OVS restart must be seen sooner.
                    idl._session.reconnect.set_backoff(100, self._max_backoff_ms)
                self._loop(idl)
                return
            except Exception:  # noqa: BLE001 - never let the monitor die; start over
                LOG.exception("port monitor failed; restarting it")
                if idl is not None:
                    try:
                        idl.close()
                    except Exception:  # noqa: BLE001
                        pass
                idl = None
                self._stop.wait(0.5)

    def _loop(self, idl: ovs.db.idl.Idl) -> None:
        session = idl._session
        seen_conn_seqno = -1  # connection sequence number at which we last got the DB
        last_change = -1
        while not self._stop.is_set():
            idl.run()
            conn_seqno = session.get_seqno()
            # Publish only complete copies: after a reconnection the IDL keeps the old rows
            # until the new dump has been parsed, so no empty set is ever seen in between.
            if session.is_connected() and idl.change_seqno != last_change \
                    and idl.state == idl.IDL_S_MONITORING:
                last_change = idl.change_seqno
                reconnected = seen_conn_seqno not in (-1, conn_seqno)
                first = seen_conn_seqno == -1
                if conn_seqno != seen_conn_seqno:
                    self.connections += 1
                    seen_conn_seqno = conn_seqno
                    if not first:
                        LOG.warning("OVSDB %s: reconnected", self.ovsdb)
                self._publish(vm_ports_of(idl.tables["Bridge"].rows.values(), self.int_br),
                              reconnected)
            poller = ovs.poller.Poller()
            idl.wait(poller)
            poller.fd_wait(self._wake_r, select.POLLIN)
            poller.timer_wait(1000)
            poller.block()
        idl.close()

    def _publish(self, ports: PortMap, reconnected: bool) -> None:
        with self._lock:
            changed = ports != self._ports
            self._ports = ports
        first = not self._ready.is_set()
        self._ready.set()
        if changed or reconnected or first:
            t0 = time.monotonic()
            try:
                self._on_change(dict(ports), reconnected)
            except Exception:  # noqa: BLE001 - a callback bug must not stop the monitor
                LOG.exception("port change callback failed")
            LOG.debug("port callback took %.1f ms", (time.monotonic() - t0) * 1000)
