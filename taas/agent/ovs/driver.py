"""The OVS driver: converges a host's switches to its desired state.

``sync`` = read local facts from OVSDB -> compile (pure, ``compile.py``) -> know the flows that
carry the taas cookie (last applied set, checked by count; or dumped) -> diff -> apply the
difference in one OpenFlow bundle per bridge, bridges with work in parallel.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TypeVar

from taas.agent.ovs import meters as M
from taas.agent.ovs import tables as T
from taas.agent.ovs.compile import (
    BR_INT,
    BR_TAP,
    BR_TUN,
    BridgeFacts,
    Compiled,
    compile_host,
    held_taas_ids,
    held_vlans,
    static_flows,
)
from taas.agent.ovs.counters import CounterReader, FlowStats, dump_stats
from taas.agent.ovs.flows import Flow
from taas.agent.ovs.ovsdb import Iface, OvsdbClient
from taas.agent.ovs.probe import probe_flows
from taas.agent.ovs.switch import OpenFlowBridge, SwitchError, ovs_spelling
from taas.agent.ports import LocalPort
from taas.common.desired_state import (
    CounterSlot,
    DesiredState,
    ResourceStatus,
    TapMirrorState,
)

LOG = logging.getLogger(__name__)
R = TypeVar("R")

# external_ids marking the tap-mirror tunnel ports the driver owns on br-tap
EXT_MIRROR = "taas-tap-mirror"
EXT_DIRECTION = "taas-direction"
TUNNEL_TYPES = ("vxlan",)


@dataclass(frozen=True)
class SyncResult:
    statuses: tuple[ResourceStatus, ...]  # every resource of the desired state, ACTIVE or ERROR
    taas_ids: tuple[int, ...]  # taas_ids present in this host's taas flows after the sync
    added: int  # flows added on the switches
    removed: int  # flows removed from the switches


def mirror_port_name(mirror_id: str, direction: str) -> str:
    """A stable, short (< 16 chars) OVSDB name for a tap mirror's tunnel port."""
    return "tm" + hashlib.sha1(f"{mirror_id}/{direction}".encode()).hexdigest()[:11]


class OvsDriver:
    """Drives br-int, br-tap and br-tun of one host (see docs/pipeline.md)."""

    def __init__(
        self, ovsdb: str | OvsdbClient, rundir: str, host: str, tunnel_ip: str,
        int_br: str = "br-int",
        tun_br: str = "br-tun", tap_br: str = "br-tap", continuation: str = "NORMAL",
        hook_table: int = 0,
    ) -> None:
        self.host = host
        self.tunnel_ip = tunnel_ip
        self.int_br, self.tun_br, self.tap_br = int_br, tun_br, tap_br
        # What a mirrored frame does next on br-int: NORMAL in the lab; a Neutron node with the
        # OVS firewall would continue in the L2 agent's pipeline instead (e.g. resubmit(,60)).
        self.continuation = continuation
        self.hook_table = hook_table  # where copies are made (docs/neutron.md)
        # The agent's one OVSDB connection (shared with its port monitor), or our own.
        self._owns_db = not isinstance(ovsdb, OvsdbClient)
        self.db = OvsdbClient(ovsdb) if isinstance(ovsdb, str) else ovsdb
        self.db.start()
        self.of = {BR_INT: OpenFlowBridge(rundir, int_br), BR_TAP: OpenFlowBridge(rundir, tap_br),
                   BR_TUN: OpenFlowBridge(rundir, tun_br)}
        # The flows of each bridge as of our last successful apply. Only we write our cookie,
        # so while the switch holds as many flows with it as we applied, they are these; any
        # loss (a wipe, a restart, a delete by cookie) changes the count and forces a dump.
        self._applied: dict[str, frozenset[Flow]] = {}
        # The meters (taas's id range) of each bridge as of our last write, like _applied:
        # re-read when unknown or when the bridge's flows were (a deleted meter takes its
        # flows with it, so the flow count catches that too).
        self._meters: dict[str, dict[int, M.MeterSpec]] = {}
        self._pool: ThreadPoolExecutor | None = None
        # The last compile and its inputs: the agent's periodic sync repeats the same inputs
        # (under a new revision number), and comparing them is far cheaper than compiling.
        self._compiled: tuple[tuple[object, ...], Compiled] | None = None
        # The tap mirrors' local VLANs the switch may hold: (mirror id, direction) -> VLAN.
        # Kept across syncs so a VLAN never changes owner while a bridge may still hold flows
        # of its old owner (bridges are applied independently). None until recovered from the
        # switch (first sync); ``_vlans_orphan``: mirror-range VLANs seen there, owner unknown.
        self._mirror_vlans: dict[tuple[str, str], int] | None = None
        self._vlans_orphan: frozenset[int] = frozenset()
        # Whether OVS dumps flows exactly as the compiler spells them, probed once per switch
        # (first sync, and after each setup: an OVS restart may be an upgrade). When it does
        # not, ``_respelled`` holds each compiled flow in OVS's own spelling, and flows are
        # compared in it, so the periodic verify does not delete and re-add them every time.
        self._probed = False
        self._respelled: dict[Flow, Flow] | None = None

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create br-tap and the patch ports (idempotent); install the static flows."""
        api = self.db.api
        dp = self.db.bridge_column(self.int_br, "datapath_type") or "system"
        pairs = [(self.int_br, T.PATCH_INT_TAP, T.PATCH_TAP_INT),
                 (self.tap_br, T.PATCH_TAP_INT, T.PATCH_INT_TAP),
                 (self.tap_br, T.PATCH_TAP_TUN, T.PATCH_TUN_TAP),
                 (self.tun_br, T.PATCH_TUN_TAP, T.PATCH_TAP_TUN)]
        cmds = [api.add_br(self.tap_br, may_exist=True, datapath_type=dp),
                api.db_set("Bridge", self.tap_br, ("datapath_type", dp),
                           ("fail_mode", "secure"))]
        for br, name, peer in pairs:
            cmds += [api.add_port(br, name, may_exist=True),
                     api.db_set("Interface", name, ("type", "patch"),
                                ("options", {"peer": peer}))]
        # Keep patch-int-tap out of every tenant VLAN, so NORMAL never floods tenant frames to
        # br-tap; its own input is always handled by taas flows, never by NORMAL.
        cmds.append(api.db_set("Port", T.PATCH_INT_TAP, ("tag", T.DEAD_VLAN)))
        # A VM-tagged frame carries two tags once the taas VLAN is pushed: let OVS parse both
        # (vlan_filter matching after the local VLAN is popped). Host-wide key, owned by taas.
        cmds.append(api.db_set("Open_vSwitch", ".", ("other_config", {"vlan-limit": "2"})))
        self.db.transact(cmds)
        self._applied.clear()
        self._meters.clear()
        self._probed = False
        facts = self._facts()[0]  # the transaction waited for ovs-vswitchd
        self._map(lambda br: self.of[br].apply((), static_flows(facts)[br]),  # idempotent add
                  [BR_INT, BR_TAP, BR_TUN])

    def switch_was_reset(self) -> bool:
        """True when the canary flow is gone from any bridge (OVS restarted, flows wiped)."""
        try:
            return any(self.of[b].count(T.CANARY_TABLE) == 0 for b in (BR_INT, BR_TAP, BR_TUN))
        except SwitchError:
            return True

    def close(self) -> None:
        """Close the OVSDB connection (if ours), the OpenFlow connections, the threads."""
        if self._owns_db:
            self.db.close()
        for of in self.of.values():
            of.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # --- sync --------------------------------------------------------------------------------

    def sync(self, desired: DesiredState, ports: Mapping[str, LocalPort],
             verify: bool = False) -> SyncResult:
        """Converge the switches to ``desired``: compile, diff against the switch, apply.

        A bridge's flows are known without reading them back when the switch still holds as
        many taas flows as the driver last applied there (one aggregate request): any loss
        (wipe, restart, delete by someone else) changes that count and forces a full dump.
        ``verify=True`` dumps and diffs every bridge regardless (the agent's periodic check:
        also catches a taas flow someone rewrote in place, which the count cannot see).
        """
        try:
            return self._sync(desired, ports, verify, fresh=False)
        except SwitchError as e:
            # The OVSDB replica may lag behind a change that just happened (a bridge deleted,
            # ports renumbered): once more, after an OVSDB barrier, from full dumps.
            LOG.warning("host %s: sync failed (%s); retrying from fresh facts", self.host, e)
            self._applied.clear()
            self._meters.clear()
            return self._sync(desired, ports, True, fresh=True)

    def _sync(self, desired: DesiredState, ports: Mapping[str, LocalPort], verify: bool,
              fresh: bool) -> SyncResult:
        try:
            facts, ifaces = self._facts(fresh)
        except SwitchError:
            # br-tap or a patch port is gone while the canary survived: rebuild, then go on.
            LOG.warning("host %s: taas bridge/ports missing, running setup()", self.host)
            self.setup()
            facts, ifaces = self._facts(fresh=True)
        dumped: dict[str, set[Flow]] = {}
        if self._mirror_vlans is None:
            dumped = self._recover_mirror_vlans(facts)
        if self._reconcile_mirror_ports(desired, ports, ifaces):
            facts, ifaces = self._facts()  # the transaction waited for the new ofports
            dumped = {}  # (flows are not touched by port changes, but do not rely on it)
        if not self._probed:
            self._probe()
        compiled = self._compile(desired, ports, facts)
        # Until every bridge has converged, the switch may hold the old and the new VLANs.
        held = self._mirror_vlans or {}
        self._mirror_vlans = {**held, **compiled.mirror_vlans}
        # What each bridge holds: the last applied set if the count agrees (no process).
        known: dict[str, frozenset[Flow] | None] = {}
        for br in (BR_INT, BR_TAP, BR_TUN):
            cached = self._applied.pop(br, None)
            ok = cached is not None and not verify and self.of[br].count() == len(cached)
            known[br] = cached if ok else None
            if ok and (cached is compiled.flows[br] or cached == compiled.flows[br]):
                self._applied[br] = cached  # nothing to do on this bridge

        stale = self._write_meters(compiled, known)

        def converge(br: str) -> tuple[int, int]:
            want = compiled.flows[br]
            have = known[br] if known[br] is not None else dumped.get(br)
            delete, add = diff(have if have is not None else self.of[br].dump(), want)
            self.of[br].apply(delete, add)
            self._applied[br] = want
            return len(add), len(delete)

        # Bridges with work, in parallel. Order between bridges does not matter: each bundle
        # is atomic, and a copy VLAN names one sink for as long as any bridge may hold its
        # flows (taas_ids: the server reuses none a host still reports; tap mirror VLANs: kept
        # per mirror above, a freed one not reused before every bridge has dropped it), so a
        # copy whose next hop is not there yet (or any more) meets that bridge's default drop
        # (br-tap: everything unconfigured; br-tun: anything else from patch-tun-tap; br-int:
        # anything else from patch-int-tap), never a wrong port.
        work = [br for br in (BR_INT, BR_TAP, BR_TUN) if br not in self._applied]
        counts = self._map(converge, work)
        for br, ids in stale.items():  # no flow uses them any more
            M.delete_meters(self.of[br].target, ids)
            for i in ids:
                self._meters[br].pop(i, None)
        # Every bridge holds the compiled flows: the VLANs freed by this sync are gone.
        self._mirror_vlans = dict(compiled.mirror_vlans)
        self._vlans_orphan = frozenset()
        added = sum(a for a, _ in counts)
        removed = sum(r for _, r in counts)
        if added or removed:
            LOG.info("host %s: +%d -%d flows", self.host, added, removed)
        return SyncResult(compiled.statuses, compiled.taas_ids, added, removed)

    def _write_meters(self, compiled: Compiled, known: Mapping[str, frozenset[Flow] | None]
                      ) -> dict[str, list[int]]:
        """Add / change the meters the compiled flows use (before the flows); returns the
        meters of ours no flow will use, per bridge (deleted after the flows)."""
        stale: dict[str, list[int]] = {}
        for br in (BR_INT, BR_TAP):
            want = {m.meter_id: m for m in compiled.meters.get(br, ())}
            have = self._meters.get(br)
            if have is None or (known[br] is None and (want or have)):
                have = M.read_meters(self.of[br].target)
            self._meters[br] = have
            if have == want:
                continue
            gone, written = M.write_meters(self.of[br].target, have, want.values())
            self._meters[br] = {**have, **want}
            if gone:
                stale[br] = gone
            if written:
                LOG.info("host %s: %d meters written on %s", self.host, written, br)
        return stale

    def meter_stats(self) -> dict[int, M.MeterStats]:
        """The counts of taas's meters on br-int and br-tap
        (``meters.resource_meters`` says which resource each belongs to)."""
        out: dict[int, tuple[int, int]] = {}
        for br in (BR_INT, BR_TAP):
            out.update(M.read_meter_stats(self.of[br].target))
        return out

    def probe_spelling(self) -> list[tuple[Flow, Flow | None]]:
        """Write the compiler's vocabulary (``probe_flows``) to an inert table of br-tap under
        our cookie, read it back, remove it. Returns the flows OVS dumps differently: (as
        written, as dumped or None). Empty: text comparison is exact."""
        written = probe_flows(self.continuation)
        of = self.of[BR_TAP]
        dumped: set[Flow] = set()
        try:
            of.apply((), written)
            dumped = of.dump(T.PROBE_TABLE)
        finally:
            of.apply(set(written) | dumped, ())
        by_prio = {f.priority: f for f in dumped}
        return [(f, by_prio.get(f.priority)) for f in written if f not in dumped]

    def _probe(self) -> None:
        try:
            differ = self.probe_spelling()
        except SwitchError as e:
            LOG.warning("host %s: flow spelling probe failed (%s); retried at the next sync",
                        self.host, e)
            return
        self._probed = True
        if not differ:
            if self._respelled is not None:
                LOG.info("host %s: OVS spells flows as the compiler does again", self.host)
            self._respelled = None
            return
        wrote, got = differ[0]
        LOG.warning(
            "host %s: OVS dumps %d of %d probe flows differently than the compiler writes them "
            "(e.g. wrote %r, OVS dumps %r); flows are compared in OVS's own spelling from now "
            "on (parsed by ovs-ofctl) so the periodic verify does not rewrite them", self.host,
            len(differ), len(probe_flows(self.continuation)),
            f"{wrote.match} {wrote.actions}", f"{got.match} {got.actions}" if got else None)
        self._respelled = {}
        self._compiled = None

    def _respell(self, compiled: Compiled) -> Compiled:
        """``compiled`` in OVS's spelling (each flow parsed by OVS once, then remembered)."""
        assert self._respelled is not None
        every = {f for fs in compiled.flows.values() for f in fs}
        new = every - self._respelled.keys()
        if new:
            self._respelled.update(ovs_spelling(new))
        if len(self._respelled) > 2 * len(every) + 1000:  # forget flows long gone
            self._respelled = {f: self._respelled[f] for f in every}
        spelled = {br: frozenset(self._respelled[f] for f in fs)
                   for br, fs in compiled.flows.items()}
        counted = {self._respelled[f]: c for f, c in compiled.counted.items()}
        return replace(compiled, flows=spelled, counted=counted)

    def _compile(self, desired: DesiredState, ports: Mapping[str, LocalPort],
                 facts: BridgeFacts) -> Compiled:
        held = dict(self._mirror_vlans or {})
        key = (replace(desired, revision=0), dict(ports), facts, held, self._vlans_orphan)
        if self._compiled is not None and self._compiled[0] == key:
            return self._compiled[1]
        compiled = compile_host(desired, ports, facts, self.host, self.continuation,
                                mirror_vlans=held, reserved_vlans=self._vlans_orphan,
                                hook_table=self.hook_table)
        if self._respelled is not None:
            compiled = self._respell(compiled)
        self._compiled = (key, compiled)
        return compiled

    def counter_slots(self, reader: CounterReader) -> list[CounterSlot]:
        """The raw counters of the flows that count for a resource and the drops of its rate
        limits (docs/pipeline.md, "Counters"), as of the last compile: one dump with
        statistics per bridge holding such flows, one meter-stats per bridge with meters
        (nothing while nothing is counted). Safe beside a sync in another thread: it only
        reads the switch and the last compile's result."""
        last = self._compiled
        if last is None or not last[1].counted:
            return []
        desired, compiled = last[0][0], last[1]
        now = time.time()
        stats: dict[str, list[FlowStats]] = {}
        for br, flows in compiled.flows.items():
            if any(f in compiled.counted for f in flows):
                stats[self.of[br].bridge] = [st for st in dump_stats(self.of[br].target)
                                             if st.flow in flows]
        out = reader.slots(compiled.counted, stats, now)
        owners = {mid: (kind, rid, "dropped", d)
                  for (kind, rid, d), ids in M.resource_meters(desired).items()  # type: ignore[arg-type]
                  for mid in ids}
        drops = {self.of[br].bridge: M.read_meter_stats(self.of[br].target).values()
                 for br, specs in compiled.meters.items() if specs}
        return out + reader.dropped(owners, drops, now)

    def held_taas_ids(self) -> tuple[int, ...]:
        """The taas_ids this host's taas flows hold, read back from the switch (sorted).

        Needs no sync: what a previous run (or a sync that failed half-way) left on the
        bridges, from a dump of every bridge. Raises ``SwitchError`` if one cannot be read.
        """
        bridges = [BR_INT, BR_TAP, BR_TUN]
        dumps = self._map(lambda br: self.of[br].dump(), bridges)
        return held_taas_ids(dict(zip(bridges, dumps, strict=True)))

    def _recover_mirror_vlans(self, facts: BridgeFacts) -> dict[str, set[Flow]]:
        """Learn the tap mirrors' VLANs from the switch (start-up); returns the dumps made.

        br-tap's ``dl_vlan=M -> pop_vlan,output:<port>`` names the owner through the port's
        external_ids; any other mirror-range VLAN in a taas flow is reserved (owner unknown).
        """
        by_port = {p: key for key, p in facts.mirror_ports.items()}
        dumped = dict(zip((BR_INT, BR_TAP),
                          self._map(lambda br: self.of[br].dump(), [BR_INT, BR_TAP]),
                          strict=True))
        found: dict[tuple[str, str], int] = {}
        seen = {v for v in held_vlans(dumped) if T.MIRROR_VLAN_FIRST <= v <= T.MIRROR_VLAN_LAST}
        for f in dumped[BR_TAP]:
            vlan, out = f.field("dl_vlan"), _MIRROR_EXIT.search(f.actions)
            if vlan is None or out is None:
                continue
            key = by_port.get(int(out.group(1)))
            if key is not None and key not in found and int(vlan) not in found.values():
                found[key] = int(vlan)
        self._mirror_vlans = found
        self._vlans_orphan = frozenset(seen - set(found.values()))
        if found or seen:
            LOG.info("host %s: tap mirror VLANs on the switch: %s (reserved: %s)", self.host,
                     found, sorted(self._vlans_orphan))
        return dumped

    def _map(self, fn: Callable[[str], R], bridges: list[str]) -> list[R]:
        """fn over bridges, concurrently when more than one (each runs its own ovs-ofctl)."""
        if len(bridges) <= 1:
            return [fn(br) for br in bridges]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="taas-ovs")
        futures = [self._pool.submit(fn, br) for br in bridges]
        wait(futures)  # every bridge finishes (or fails) before anything else touches them
        return [f.result() for f in futures]  # the first error, if any, is raised here

    # --- OVSDB facts -------------------------------------------------------------------------

    def _facts(self, fresh: bool = False) -> tuple[BridgeFacts, dict[str, Iface]]:
        """Facts from the OVSDB replica; ``fresh``: after a barrier (ovs-vswitchd caught up)."""
        if fresh:
            self.db.barrier()
        ifaces = self.db.interfaces()

        def ofport(name: str, bridge: str) -> int:
            i = ifaces.get(name)
            if i is None or i.bridge != bridge or i.ofport is None:
                raise SwitchError(f"{name} missing on {bridge}: run setup()")
            return i.ofport

        tun_names = {i.name for i in ifaces.values() if i.bridge == self.tun_br}
        int_patch_tun = next(
            (i.ofport for i in ifaces.values()
             if i.bridge == self.int_br and i.type == "patch" and i.name != T.PATCH_INT_TAP
             and i.options.get("peer") in tun_names), None)
        vxlan = {i.options["remote_ip"]: i.ofport for i in sorted(ifaces.values(),
                                                                  key=lambda i: i.name)
                 if i.bridge == self.tun_br and i.type in TUNNEL_TYPES and i.ofport
                 and "remote_ip" in i.options}
        mirrors = {(i.external_ids[EXT_MIRROR], i.external_ids[EXT_DIRECTION]): i.ofport
                   for i in ifaces.values()
                   if i.bridge == self.tap_br and EXT_MIRROR in i.external_ids and i.ofport}
        facts = BridgeFacts(
            int_patch_tap=ofport(T.PATCH_INT_TAP, self.int_br),
            tap_patch_int=ofport(T.PATCH_TAP_INT, self.tap_br),
            tap_patch_tun=ofport(T.PATCH_TAP_TUN, self.tap_br),
            tun_patch_tap=ofport(T.PATCH_TUN_TAP, self.tun_br),
            int_patch_tun=int_patch_tun, vxlan_ports=vxlan, mirror_ports=mirrors)
        return facts, ifaces

    def _mirror_port_spec(
        self, m: TapMirrorState, direction: str, src: LocalPort
    ) -> tuple[str, dict[str, str]]:
        """(interface type, options) of a tap mirror direction's tunnel port."""
        opts = {"remote_ip": m.remote_ip, "key": str(m.directions[direction])}
        if m.mirror_type == "erspanv1":
            # ERSPAN's index names the mirrored port: its ofport on br-int (hex, as OVS reads it).
            return "erspan", opts | {"erspan_ver": "1", "erspan_idx": f"{src.ofport:x}"}
        return "gre", opts

    def _reconcile_mirror_ports(
        self, desired: DesiredState, ports: Mapping[str, LocalPort], ifaces: dict[str, Iface]
    ) -> bool:
        """Create/update/remove the tap mirrors' GRE/ERSPAN ports on br-tap; True if changed."""
        want: dict[str, tuple[str, str, tuple[str, dict[str, str]]]] = {}
        for m in desired.tap_mirrors:
            src = ports.get(m.port_id)
            if src is None:
                continue
            for d in m.directions:
                want[mirror_port_name(m.id, d)] = (m.id, d, self._mirror_port_spec(m, d, src))
        have = {i.name: i for i in ifaces.values()
                if i.bridge == self.tap_br and EXT_MIRROR in i.external_ids}
        api = self.db.api
        cmds = [api.del_port(name, bridge=self.tap_br, if_exists=True)
                for name in sorted(set(have) - set(want))]
        for name, (mid, d, (kind, options)) in sorted(want.items()):
            cur = have.get(name)
            if cur is not None and cur.type == kind and cur.options == options:
                continue
            if cur is not None:
                cmds.append(api.del_port(name, bridge=self.tap_br, if_exists=True))
            cmds.append(api.add_port(self.tap_br, name, may_exist=False, type=kind,
                                     options=options,
                                     external_ids={EXT_MIRROR: mid, EXT_DIRECTION: d}))
        if not cmds:
            return False
        self.db.transact(cmds)
        return True


# br-tap's exit of a tap mirror's copies (after its meters, if any): its tunnel port
_MIRROR_EXIT = re.compile(r"pop_vlan,output(?::|\(port=)(\d+)")


def diff(have: set[Flow] | frozenset[Flow], want: frozenset[Flow]) -> tuple[set[Flow], set[Flow]]:
    """(to delete, to add). A flow whose actions changed is deleted and re-added in one bundle."""
    return set(have) - want, set(want) - set(have)
