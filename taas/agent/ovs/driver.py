"""The OVS driver: converges a host's switches to its desired state.

``sync`` = read local facts from OVSDB -> compile (pure, ``compile.py``) -> dump the flows that
carry the taas cookie -> diff -> apply the difference in one OpenFlow bundle per bridge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from taas.agent.ovs import tables as T
from taas.agent.ovs.compile import BR_INT, BR_TAP, BR_TUN, BridgeFacts, compile_host, static_flows
from taas.agent.ovs.flows import Flow
from taas.agent.ovs.switch import Iface, OpenFlowBridge, Ovsdb, SwitchError
from taas.common.desired_state import DesiredState, ResourceStatus, TapMirrorState

LOG = logging.getLogger(__name__)

# external_ids marking the tap-mirror tunnel ports the driver owns on br-tap
EXT_MIRROR = "taas-tap-mirror"
EXT_DIRECTION = "taas-direction"
TUNNEL_TYPES = ("vxlan",)


@dataclass(frozen=True)
class LocalPort:
    """A VM port found on br-int (from OVSDB)."""

    port_id: str  # external_ids:iface-id
    ofport: int
    local_vlan: int | None  # the access tag on br-int (per-host VLAN of its network)
    mac: str  # external_ids:attached-mac
    name: str  # OVSDB port/interface name


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
        self, ovsdb: str, rundir: str, host: str, tunnel_ip: str, int_br: str = "br-int",
        tun_br: str = "br-tun", tap_br: str = "br-tap", continuation: str = "NORMAL",
    ) -> None:
        self.host = host
        self.tunnel_ip = tunnel_ip
        self.int_br, self.tun_br, self.tap_br = int_br, tun_br, tap_br
        # What a mirrored frame does next on br-int: NORMAL in the lab; a Neutron node with the
        # OVS firewall would continue in the L2 agent's pipeline instead (e.g. resubmit(,60)).
        self.continuation = continuation
        self.ovsdb = Ovsdb(ovsdb)
        self.of = {BR_INT: OpenFlowBridge(rundir, int_br), BR_TAP: OpenFlowBridge(rundir, tap_br),
                   BR_TUN: OpenFlowBridge(rundir, tun_br)}
        # The flows of each bridge as of our last successful apply. Only we write our cookie,
        # so while the switch holds as many flows with it as we applied, they are these; any
        # loss (a wipe, a restart, a delete by cookie) changes the count and forces a dump.
        self._applied: dict[str, frozenset[Flow]] = {}

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create br-tap and the patch ports (idempotent); install the static flows."""
        dp = self.ovsdb.get("Bridge", self.int_br, "datapath_type").strip('"') or "system"
        pairs = [(self.int_br, T.PATCH_INT_TAP, T.PATCH_TAP_INT),
                 (self.tap_br, T.PATCH_TAP_INT, T.PATCH_INT_TAP),
                 (self.tap_br, T.PATCH_TAP_TUN, T.PATCH_TUN_TAP),
                 (self.tun_br, T.PATCH_TUN_TAP, T.PATCH_TAP_TUN)]
        args = ["--may-exist", "add-br", self.tap_br, "--", "set", "Bridge", self.tap_br,
                f"datapath_type={dp}", "fail_mode=secure"]
        for br, name, peer in pairs:
            args += ["--", "--may-exist", "add-port", br, name,
                     "--", "set", "Interface", name, "type=patch", f"options:peer={peer}"]
        # Keep patch-int-tap out of every tenant VLAN, so NORMAL never floods tenant frames to
        # br-tap; its own input is always handled by taas flows, never by NORMAL.
        args += ["--", "set", "Port", T.PATCH_INT_TAP, f"tag={T.DEAD_VLAN}"]
        # A VM-tagged frame carries two tags once the taas VLAN is pushed: let OVS parse both
        # (vlan_filter matching after the local VLAN is popped). Host-wide key, owned by taas.
        args += ["--", "set", "Open_vSwitch", ".", "other_config:vlan-limit=2"]
        self.ovsdb.vsctl(*args)
        self._applied.clear()
        facts = self._facts()[0]
        for br, flows in static_flows(facts).items():
            self.of[br].apply((), flows)  # add = create or overwrite: idempotent

    def switch_was_reset(self) -> bool:
        """True when the canary flow is gone from any bridge (OVS restarted, flows wiped)."""
        try:
            return any(not self.of[b].dump(T.CANARY_TABLE) for b in (BR_INT, BR_TAP, BR_TUN))
        except SwitchError:
            return True

    def close(self) -> None:
        """Nothing is held open: every call to OVS is a short-lived command."""

    # --- sync --------------------------------------------------------------------------------

    def sync(self, desired: DesiredState, ports: Mapping[str, LocalPort]) -> SyncResult:
        """Converge the switches to ``desired``: compile, dump own flows, diff, apply."""
        try:
            facts, ifaces = self._facts()
        except SwitchError:
            # br-tap or a patch port is gone while the canary survived: rebuild, then go on.
            LOG.warning("host %s: taas bridge/ports missing, running setup()", self.host)
            self.setup()
            facts, ifaces = self._facts()
        if self._reconcile_mirror_ports(desired, ports, ifaces):
            facts, ifaces = self._facts()
        compiled = compile_host(desired, ports, facts, self.host, self.continuation)
        added = removed = 0
        # Upstream first: new copies meet br-tap's default drop until it is ready, and removed
        # copies stop at the source before their path goes. Nothing leaks in between.
        for br in (BR_INT, BR_TAP, BR_TUN):
            want = compiled.flows[br]
            cached = self._applied.pop(br, None)
            if cached is not None and self.of[br].count() == len(cached):
                have: frozenset[Flow] | set[Flow] = cached
            else:
                have = self.of[br].dump()
            delete, add = diff(have, want)
            self.of[br].apply(delete, add)
            self._applied[br] = want
            added += len(add)
            removed += len(delete)
        if added or removed:
            LOG.info("host %s: +%d -%d flows", self.host, added, removed)
        return SyncResult(compiled.statuses, compiled.taas_ids, added, removed)

    # --- OVSDB facts -------------------------------------------------------------------------

    def _facts(self) -> tuple[BridgeFacts, dict[str, Iface]]:
        _, ifaces = self.ovsdb.snapshot()

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
    ) -> dict[str, str]:
        opts = {"remote_ip": m.remote_ip, "key": str(m.directions[direction])}
        if m.mirror_type == "erspanv1":
            # ERSPAN's index names the mirrored port: its ofport on br-int (hex, as OVS reads it).
            opts |= {"erspan_ver": "1", "erspan_idx": f"{src.ofport:x}"}
            return {"type": "erspan", **{f"options:{k}": v for k, v in opts.items()}}
        return {"type": "gre", **{f"options:{k}": v for k, v in opts.items()}}

    def _reconcile_mirror_ports(
        self, desired: DesiredState, ports: Mapping[str, LocalPort], ifaces: dict[str, Iface]
    ) -> bool:
        """Create/update/remove the tap mirrors' GRE/ERSPAN ports on br-tap; True if changed."""
        want: dict[str, tuple[str, str, dict[str, str]]] = {}
        for m in desired.tap_mirrors:
            src = ports.get(m.port_id)
            if src is None:
                continue
            for d in m.directions:
                want[mirror_port_name(m.id, d)] = (m.id, d, self._mirror_port_spec(m, d, src))
        have = {i.name: i for i in ifaces.values()
                if i.bridge == self.tap_br and EXT_MIRROR in i.external_ids}
        args: list[str] = []
        for name in sorted(set(have) - set(want)):
            args += ["--", "--if-exists", "del-port", self.tap_br, name]
        for name, (mid, d, spec) in sorted(want.items()):
            cur = have.get(name)
            if cur is not None and cur.type == spec["type"] and cur.options == {
                    k.removeprefix("options:"): v for k, v in spec.items() if k != "type"}:
                continue
            if cur is not None:
                args += ["--", "del-port", self.tap_br, name]
            args += ["--", "add-port", self.tap_br, name, "--", "set", "Interface", name,
                     *[f"{k}={v}" for k, v in spec.items()],
                     f"external_ids:{EXT_MIRROR}={mid}", f"external_ids:{EXT_DIRECTION}={d}"]
        if not args:
            return False
        self.ovsdb.vsctl(*args[1:])
        return True


def diff(have: set[Flow] | frozenset[Flow], want: frozenset[Flow]) -> tuple[set[Flow], set[Flow]]:
    """(to delete, to add). A flow whose actions changed is deleted and re-added in one bundle."""
    return set(have) - want, set(want) - set(have)
