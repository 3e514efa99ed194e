"""Port monitor: the VM ports on br-int, as OVSDB sees them, kept current by monitor updates.

It listens to the agent's one OVSDB connection (``ovs.ovsdb.OvsdbClient``: a replica kept
current by ovsdb-server's monitor notifications, no polling). After each batch of updates its
thread recomputes the set of VM ports and hands it to a callback when it changed. A VM port is
an Interface on a Port of the integration bridge with ``external_ids:iface-id`` (Neutron's
convention) whose ``ofport`` ovs-vswitchd has filled in; patch and tunnel interfaces are never
VM ports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from taas.agent.ovs.ovsdb import OvsdbClient, optional
from taas.agent.ports import LocalPort, PortMap

LOG = logging.getLogger(__name__)

# Interface types that are never VM ports even if someone put an iface-id on them.
NON_VM_TYPES = frozenset({"patch", "vxlan", "gre", "geneve", "stt", "erspan", "ip6erspan",
                          "ip6gre", "lisp", "gtpu", "bareudp", "srv6"})


ChangeCallback = Callable[[PortMap, bool], None]


def vm_ports_of(bridges: Any, int_br: str) -> PortMap:
    """Compute the VM ports of bridge ``int_br`` from IDL rows (pure, no I/O)."""
    found: dict[str, LocalPort] = {}
    for bridge in bridges:
        if bridge.name != int_br:
            continue
        for port in bridge.ports:
            tag = optional(port.tag)
            for iface in port.interfaces:
                if iface.type in NON_VM_TYPES:
                    continue
                ext = dict(iface.external_ids)
                port_id = ext.get("iface-id")
                ofport = optional(iface.ofport)
                if not port_id or ofport is None or int(ofport) <= 0:
                    continue  # not a VM port, or vswitchd has not attached it yet
                mac = ext.get("attached-mac") or optional(iface.mac_in_use) or ""
                candidate = LocalPort(port_id, int(ofport), int(tag) if tag is not None else None,
                                   str(mac).lower(), iface.name)
                # Two interfaces claiming one iface-id (a move in progress): keep the newest.
                if port_id not in found or candidate.ofport > found[port_id].ofport:
                    found[port_id] = candidate
    return found


class PortMonitor:
    """Keeps the VM ports of one integration bridge and reports changes and reconnections."""

    def __init__(self, ovsdb: str | OvsdbClient, int_br: str, on_change: ChangeCallback,
                 max_backoff_ms: int = 1000) -> None:
        self._owns_db = isinstance(ovsdb, str)
        self.db = (OvsdbClient(ovsdb, max_backoff_ms=max_backoff_ms) if isinstance(ovsdb, str)
                   else ovsdb)
        self.int_br = int_br
        self._on_change = on_change
        self._lock = threading.Lock()
        self._ports: PortMap = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.db.listen(self._wake.set)
        self._wake.set()  # the connection may be up already (shared): read at once
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times the replica was (re)loaded from OVSDB

    # -- public ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="port-monitor", daemon=True)
        self._thread.start()
        self.db.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_db:
            self.db.close()

    def wait_ready(self, timeout: float) -> bool:
        """True once the first copy of the database has arrived."""
        return self._ready.wait(timeout)

    def ports(self) -> PortMap:
        with self._lock:
            return dict(self._ports)

    # -- the monitor thread ------------------------------------------------------------------
    def _run(self) -> None:
        seen_sessions = 0  # the session whose database we last published
        last_change = -1
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                # Only complete copies (``read`` is None while a reconnection reloads the
                # database): no empty set is ever seen in between.
                snap = self.db.read(self._snapshot)
                if snap is None or (snap[0], snap[1]) == (seen_sessions, last_change):
                    continue
                sessions, last_change, ports = snap
                reconnected = seen_sessions not in (0, sessions)
                if sessions != seen_sessions:
                    self.connections += 1
                    if reconnected:
                        LOG.warning("OVSDB %s: reconnected", self.db.remote)
                    seen_sessions = sessions
                self._publish(ports, reconnected)
            except Exception:  # noqa: BLE001 - never let the monitor die
                LOG.exception("port monitor failed; going on")
                self._stop.wait(0.5)

    def _snapshot(self, idl: Any) -> tuple[int, int, PortMap]:
        return (idl.sessions, idl.change_seqno,
                vm_ports_of(idl.tables["Bridge"].rows.values(), self.int_br))

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
