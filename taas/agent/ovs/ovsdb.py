"""The agent's one OVSDB connection (ovsdbapp): a replica, transactions, change callbacks.

ovsdbapp's connection thread keeps a replica of the few tables and columns the agent reads
(the OVS Python IDL) and runs every write as a transaction that, like ``ovs-vsctl``, waits
until ovs-vswitchd has applied it (so new ports have their ofports in the replica when it
returns). The port monitor listens for changes; the driver reads facts and writes its few
rows (br-tap, patch ports, tap mirror ports). No process per call, no second replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import ovs.db.idl
from ovsdbapp.backend.ovs_idl import command, connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from taas.agent.ovs.tool import SwitchError

LOG = logging.getLogger(__name__)
R = TypeVar("R")

LOCAL_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
# What the agent reads and writes; every other column (statistics...) stays out of the replica.
COLUMNS = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg", "other_config"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode"],
    "Port": ["name", "interfaces", "tag"],
    "Interface": ["name", "type", "ofport", "options", "external_ids", "mac_in_use"],
}


@dataclass(frozen=True)
class Iface:
    name: str
    type: str
    ofport: int | None
    options: dict[str, str]
    external_ids: dict[str, str]
    bridge: str | None


def optional(value: Any) -> Any:
    """The IDL gives optional scalar columns as [] or [v]; accept plain values too."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def interfaces_of(idl: ovs.db.idl.Idl) -> dict[str, Iface]:
    """Every interface by name, with its bridge (None: on no bridge, being added/removed)."""
    by_name: dict[str, Iface] = {}
    for br in idl.tables["Bridge"].rows.values():
        for port in br.ports:
            for i in port.interfaces:
                ofport = optional(i.ofport)
                by_name[i.name] = Iface(i.name, i.type,
                                        ofport if ofport is not None and ofport > 0 else None,
                                        dict(i.options), dict(i.external_ids), br.name)
    for i in idl.tables["Interface"].rows.values():
        if i.name not in by_name:
            by_name[i.name] = Iface(i.name, i.type, None, dict(i.options),
                                    dict(i.external_ids), None)
    return by_name


class _Idl(ovs.db.idl.Idl):
    """The IDL, counting its sessions and calling back on every row change."""

    def __init__(self, remote: str, helper: ovs.db.idl.SchemaHelper,
                 on_change: Callable[[], None], max_backoff_ms: int) -> None:
        super().__init__(remote, helper)
        self.sessions = 0  # connections made (each one reloads the whole database)
        self._on_change = on_change
        # The default backoff grows to 8 s; an OVS restart must be seen within about a second.
        self._session.reconnect.set_backoff(100, max_backoff_ms)

    def restart_fsm(self) -> None:  # a new session: the database will be sent again
        super().restart_fsm()
        self.sessions += 1

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self._on_change()


class _Barrier(command.BaseCommand):
    """No change: a transaction of it only waits until ovs-vswitchd has caught up."""

    def run_idl(self, txn: Any) -> None:
        pass


class OvsdbClient:
    """One OVSDB connection: ``start()`` connects in the background (retrying while the
    server is down); reads hold the connection's lock; writes are waited-for transactions."""

    def __init__(self, remote: str, timeout: float = 30.0, max_backoff_ms: int = 1000) -> None:
        self.remote = remote
        self.timeout = timeout
        self._listeners: list[Callable[[], None]] = []
        self._idl = _Idl(remote, self._schema_helper(), self._changed, max_backoff_ms)
        self.conn = connection.Connection(self._idl, timeout)
        # ovsdbapp keeps its connection in a class attribute: one class per connection.
        api_class = type("OvsdbApi", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
        self.api = api_class(self.conn, start=False)
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._starter: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ifaces: tuple[tuple[int, int], dict[str, Iface]] | None = None

    def _schema_helper(self) -> ovs.db.idl.SchemaHelper:
        try:
            helper = idlutils.get_schema_helper(self.remote, "Open_vSwitch")
        except Exception:  # noqa: BLE001 - server down right now: the local schema will do
            helper = ovs.db.idl.SchemaHelper(location=LOCAL_SCHEMA)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        return helper

    # -- connection ----------------------------------------------------------------------------
    def listen(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (from the connection thread: keep it short) after any row change."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in self._listeners:
            fn()

    def start(self) -> None:
        """Connect in the background (idempotent)."""
        with self._lock:
            if self._starter is None and not self._closed.is_set():
                self._starter = threading.Thread(target=self._connect, name="ovsdb-connect",
                                                 daemon=True)
                self._starter.start()

    def _connect(self) -> None:
        while not self._closed.is_set():
            try:
                self.conn.start()  # returns once the first copy of the database is in
            except Exception as e:  # noqa: BLE001 - server down: try again
                LOG.debug("OVSDB %s: not connected yet (%s)", self.remote, e)
                self._closed.wait(0.2)
                continue
            self._ready.set()
            self._changed()
            return

    def wait_ready(self, timeout: float) -> bool:
        self.start()
        return self._ready.wait(timeout)

    @property
    def sessions(self) -> int:
        return self._idl.sessions

    def read(self, fn: Callable[[_Idl], R]) -> R | None:
        """``fn(idl)`` on a complete replica (under the connection's lock), or None while the
        database is being (re)loaded."""
        with self.conn.lock:
            if self._idl.state != self._idl.IDL_S_MONITORING:
                return None
            return fn(self._idl)

    def close(self) -> None:
        self._closed.set()
        if self._starter is not None:
            self._starter.join(timeout=5)
        try:
            self.conn.stop(timeout=5)
        except Exception:  # noqa: BLE001
            LOG.debug("OVSDB connection stop failed", exc_info=True)
        try:
            self._idl.close()
        except Exception:  # noqa: BLE001
            pass

    # -- the driver's reads and writes -------------------------------------------------------
    def interfaces(self) -> dict[str, Iface]:
        if not self.wait_ready(self.timeout):
            raise SwitchError(f"OVSDB {self.remote} not reachable")
        ifaces = self.read(self._interfaces)
        if ifaces is None:
            raise SwitchError(f"OVSDB {self.remote}: reconnecting")
        return ifaces

    def _interfaces(self, idl: _Idl) -> dict[str, Iface]:
        # Rebuilt only when the replica changed (most syncs find it as it was).
        key = (idl.sessions, idl.change_seqno)
        if self._ifaces is None or self._ifaces[0] != key:
            self._ifaces = (key, interfaces_of(idl))
        return self._ifaces[1]

    def bridge_column(self, bridge: str, column: str) -> Any:
        def get(idl: ovs.db.idl.Idl) -> Any:
            for br in idl.tables["Bridge"].rows.values():
                if br.name == bridge:
                    return getattr(br, column)
            raise SwitchError(f"bridge {bridge} not in OVSDB")

        if not self.wait_ready(self.timeout):
            raise SwitchError(f"OVSDB {self.remote} not reachable")
        value = self.read(get)
        if value is None:  # never guess (e.g. a datapath type) from a replica being reloaded
            raise SwitchError(f"OVSDB {self.remote}: reconnecting")
        return value

    def transact(self, commands: Iterable[Any]) -> None:
        """Commit ``commands`` (``self.api``'s) in one transaction; returns once ovs-vswitchd
        has applied it and the replica holds the result."""
        if not self.wait_ready(self.timeout):
            raise SwitchError(f"OVSDB {self.remote} not reachable")
        try:
            with self.api.transaction(check_error=True, log_errors=False) as txn:
                for c in commands:
                    txn.add(c)
        except Exception as e:  # noqa: BLE001 - every OVSDB failure is a switch error here
            raise SwitchError(f"OVSDB transaction failed: {e}") from e

    def barrier(self) -> None:
        """Wait until the replica holds everything ovs-vswitchd has applied so far."""
        self.transact([_Barrier(self.api)])
