"""All switch I/O of the OVS driver: OpenFlow through ovs-ofctl, OVSDB through ovs-vsctl.

Everything else in the driver is pure. OpenFlow: one version (OpenFlow 1.4, the first with
bundles) for dumps and writes alike, so flows read back exactly as the compiler spells them.
OVSDB: one ovs-vsctl transaction per change (``--may-exist``/``--if-exists``: idempotent).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taas.agent.ovs.flows import Flow, parse_dump_line
from taas.agent.ovs.tables import COOKIE

OF_VERSION = "OpenFlow14"


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
        self.target = f"unix:{os.path.join(rundir, bridge)}.mgmt"

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

    def count(self) -> int:
        """How many flows carry the taas cookie (cheap: no flow is formatted)."""
        out = _run(["ovs-ofctl", "-O", OF_VERSION, "dump-aggregate", self.target,
                    f"cookie={COOKIE:#x}/-1"])
        m = re.search(r"flow_count=(\d+)", out)
        if not m:
            raise SwitchError(f"unexpected dump-aggregate answer: {out.strip()[:200]}")
        return int(m.group(1))

    def apply(self, delete: Iterable[Flow], add: Iterable[Flow]) -> None:
        """Deletes then adds, in one atomic bundle (nothing half-installed is ever visible)."""
        # (sorted as text: a stable file, and far cheaper than ordering Flow objects)
        lines = sorted(f.delete_line() for f in delete) + sorted(f.add_line() for f in add)
        if not lines:
            return
        with tempfile.NamedTemporaryFile("w", prefix="taas-flows-", suffix=".txt") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            _run(["ovs-ofctl", "--bundle", "-O", OF_VERSION, "add-flows", self.target, fh.name])


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
