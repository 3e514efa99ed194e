"""OpenFlow I/O of the OVS driver: dumps, counts and atomic bundles per bridge.

Everything else in the driver is pure. OpenFlow: one version (OpenFlow 1.4, the first with
bundles) for dumps and writes alike, so flows read back exactly as the compiler spells them
(probed at start-up, see ``OvsDriver.probe_spelling``). Dumps and big bundles go through
``ovs-ofctl``; the cheap, frequent calls (how many taas flows a bridge holds, is the canary
there, incremental bundles) through one persistent connection per bridge (``ofconn``). OVSDB
is in ``ovsdb.py``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable

from taas.agent.ovs import ofwire, tool
from taas.agent.ovs.flows import Flow, parse_dump_line
from taas.agent.ovs.ofconn import OpenFlowConn
from taas.agent.ovs.tables import COOKIE
from taas.agent.ovs.tool import SwitchError

__all__ = ["NATIVE_BUNDLE_MAX", "OF_VERSION", "OpenFlowBridge", "SwitchError", "ovs_spelling"]

LOG = logging.getLogger(__name__)
OF_VERSION = "OpenFlow14"
# Bundles up to this many flow mods are encoded here and sent over the persistent connection
# (an incremental change: no process); bigger ones go through ovs-ofctl.
NATIVE_BUNDLE_MAX = 500


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
        out = tool.run(["ovs-ofctl", "--no-names", "--no-stats", "-O", OF_VERSION,
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
        out = tool.run(["ovs-ofctl", "-O", OF_VERSION, "dump-aggregate", self.target,
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
            tool.run(["ovs-ofctl", "--bundle", "-O", OF_VERSION, "add-flows", self.target, fh.name])


_PARSED = re.compile(r"^OFPT_FLOW_MOD \(OF1\.4\) \(xid=0x[0-9a-f]+\): ADD (?:table:(\d+) )?(.*)$")


def ovs_spelling(flows: Iterable[Flow]) -> dict[Flow, Flow]:
    """Each flow as OVS spells it: parsed and printed by OVS itself (``ovs-ofctl parse-flows``,
    one process), so that flows compare parsed, whatever the text the compiler wrote."""
    flows = list(flows)
    if not flows:
        return {}
    with tempfile.NamedTemporaryFile("w", prefix="taas-spell-", suffix=".txt") as fh:
        fh.write("\n".join(f.add_line().removeprefix("add ") for f in flows) + "\n")
        fh.flush()
        out = tool.run(["ovs-ofctl", "-O", OF_VERSION, "--no-names", "parse-flows", fh.name])
    spelled: list[Flow] = []
    for line in out.splitlines():
        m = _PARSED.match(line)
        if m is None:
            continue
        # "priority=P,<match> cookie:0x.. actions=A" -> the dump's "table=T, priority=P,..."
        head = re.sub(r" cookie:0x[0-9a-f]+", "", m.group(2))
        parsed = parse_dump_line(f"table={m.group(1) or 0}, {head}")
        if parsed is not None:
            spelled.append(parsed[1])
    if len(spelled) != len(flows):
        raise SwitchError(f"ovs-ofctl parse-flows gave {len(spelled)} flows for {len(flows)}")
    return dict(zip(flows, spelled, strict=True))
