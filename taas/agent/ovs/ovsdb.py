"""OVSDB access of the driver: writes through ovs-vsctl, reads from an IDL replica."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from taas.agent.ovs import tool

LOG = logging.getLogger(__name__)


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
        return tool.run(base + list(args))

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
