"""The pure flow compiler: a host's desired state + local facts -> the flows of each bridge.

No I/O here. ``compile_host`` returns every flow taas wants on br-int, br-tap and br-tun, and a
status (ACTIVE, or ERROR with a reason) for every resource of the desired state. The pipeline is
described table by table in docs/pipeline.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from taas.agent.ovs import tables as T
from taas.agent.ovs.flows import (
    MULTICAST,
    Flow,
    clone,
    output,
    parse_vlan_filter,
    push_vlan,
    resubmit,
    set_reg,
    set_tun_id,
    vlan_ranges_to_masks,
    vlan_vid_match,
)
from taas.common.desired_state import DesiredState, ResourceStatus, TapMirrorState

BR_INT, BR_TAP, BR_TUN = "int", "tap", "tun"


class PortLike(Protocol):
    """What the compiler needs of a local VM port (driver.LocalPort satisfies it)."""

    port_id: str
    ofport: int
    local_vlan: int | None
    mac: str


@dataclass(frozen=True)
class BridgeFacts:
    """Switch facts the compiler needs, read from OVSDB by the driver."""

    int_patch_tap: int  # ofport of patch-int-tap on br-int
    tap_patch_int: int  # ofport of patch-tap-int on br-tap
    tap_patch_tun: int  # ofport of patch-tap-tun on br-tap
    tun_patch_tap: int  # ofport of patch-tun-tap on br-tun
    int_patch_tun: int | None = None  # br-int's patch to br-tun (the L2 agent's), if any
    vxlan_ports: Mapping[str, int] = field(default_factory=dict)  # remote_ip -> ofport on br-tun
    mirror_ports: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # (tap mirror id, direction key) -> ofport of its GRE/ERSPAN port on br-tap


@dataclass(frozen=True)
class Compiled:
    flows: dict[str, frozenset[Flow]]  # "int" / "tap" / "tun" -> flows
    statuses: tuple[ResourceStatus, ...]
    taas_ids: tuple[int, ...]  # taas_ids that appear in the flows
    mirror_vlans: dict[tuple[str, str], int]  # local VLAN of each tap-mirror direction


@dataclass(frozen=True)
class _Tap:
    """One copy rule: frames of ``source`` in ``direction`` go to the sink VLAN ``sink``."""

    source: str  # port id
    out: bool
    in_: bool
    sink: int  # VLAN id pushed on the copy (taas_id, or a tap mirror's local VLAN)
    ranges: tuple[tuple[int, int], ...] | None  # vlan_filter, None = every frame
    resource: tuple[str, str] = ("", "")  # (kind, id) of the tap flow / tap mirror


def static_flows(f: BridgeFacts) -> dict[str, set[Flow]]:
    """Flows that exist whatever the desired state: drops on the taas patch ports, canaries."""
    canary = Flow.make(T.CANARY_TABLE, 0, None, "drop")
    return {
        BR_INT: {
            Flow.make(T.INT_CLASSIFY, T.PRIO_DROP_PATCH, {"in_port": str(f.int_patch_tap)}, "drop"),
            canary,
        },
        BR_TAP: {Flow.make(T.TAP_CLASSIFY, 0, None, "drop"), canary},
        BR_TUN: {
            Flow.make(T.TUN_CLASSIFY, T.PRIO_TUN_DROP, {"in_port": str(f.tun_patch_tap)}, "drop"),
            canary,
        },
    }


def assign_mirror_vlans(
    mirrors: Iterable[TapMirrorState],
    current: Mapping[tuple[str, str], int] | None = None,
    reserved: Iterable[int] = (),
) -> dict[tuple[str, str], int]:
    """Give each (tap mirror, direction) a local VLAN from the mirror range, stably.

    A key of ``current`` (what the switch may hold) keeps its VLAN; a new key gets the lowest
    VLAN that is neither in ``current`` (held, or freed by this very change: its old flows may
    still be on a bridge) nor in ``reserved`` (seen on the switch, owner unknown). A VLAN thus
    never names two sinks while any bridge may hold flows of the old one.
    """
    current = current or {}
    wanted = sorted({(m.id, d) for m in mirrors for d in m.directions})
    out: dict[tuple[str, str], int] = {}
    used: set[int] = set()
    for key in wanted:
        v = current.get(key)
        if v is not None and T.MIRROR_VLAN_FIRST <= v <= T.MIRROR_VLAN_LAST and v not in used:
            out[key] = v
            used.add(v)
    blocked = used | set(current.values()) | set(reserved)
    free = (v for v in range(T.MIRROR_VLAN_FIRST, T.MIRROR_VLAN_LAST + 1) if v not in blocked)
    for key in wanted:
        if key not in out:
            v = next(free, None)
            if v is None:
                break
            out[key] = v
    return out


DEAD_PORT = "port is not wired to its network (dead VLAN)"


def wired(p: PortLike) -> bool:
    """A port in a tenant network here: access tag 1-4094 (None or 4095: Neutron's dead VLAN,
    an admin-down or unbound port, which shares that tag with every other such port)."""
    return p.local_vlan is not None and 1 <= p.local_vlan <= 4094


def unwired_ports(desired: DesiredState, ports: Mapping[str, PortLike]) -> dict[str, str]:
    """Local ports whose network context cannot be trusted -> reason: never hooked.

    Dead ports, and ports the desired state puts in different networks that share one local
    VLAN here (the local VLAN is the network context of every IN copy: it must be one network).
    """
    bad = {pid: DEAD_PORT for pid, p in ports.items() if not wired(p)}
    nets: dict[int, set[str]] = defaultdict(set)
    for pid, pf in desired.ports.items():
        p = ports.get(pid)
        if p is not None and pid not in bad:
            nets[p.local_vlan].add(pf.network_id)  # type: ignore[index]
    for pid in desired.ports:
        p = ports.get(pid)
        if p is not None and pid not in bad and len(nets[p.local_vlan]) > 1:  # type: ignore[index]
            bad[pid] = (f"port shares local VLAN {p.local_vlan} with a port of another network "
                        "on this host (not wired to its network)")
    return bad


_COPY_CACHE: dict[tuple[int, int], str] = {}


def _copy(sinks: Iterable[int], patch: int) -> str:
    # One copy per matching tap flow (two tap flows of one service that match a frame each
    # deliver it), in a stable order so the text is canonical.
    acts = []
    for s in sorted(sinks):
        a = _COPY_CACHE.get((s, patch))
        if a is None:
            a = _COPY_CACHE[(s, patch)] = clone(push_vlan(s), output(patch))
        acts.append(a)
    return ",".join(acts) if acts else "drop"


def _group_flows(
    table: int, base: int, match: dict[str, str], taps: list[_Tap], patch: int
) -> list[Flow]:
    """Flows for one match group: unfiltered taps at ``base``, vlan_filter pieces at base+1.

    The VLAN space is cut at every filter boundary of the group, so that each piece carries every
    sink that wants it: one lookup in the table yields every copy (nothing is overwritten).
    """
    if all(t.ranges is None for t in taps):  # the common case: no vlan_filter
        return [Flow.make(table, base, match, _copy([t.sink for t in taps], patch))]
    plain = [t.sink for t in taps if t.ranges is None]
    filtered = [t for t in taps if t.ranges is not None]
    flows = [Flow.make(table, base, match, _copy(plain, patch))]
    if filtered:
        cuts = sorted({a for t in filtered for a, _ in t.ranges or ()}
                      | {b + 1 for t in filtered for _, b in t.ranges or ()})
        for lo, nxt in zip(cuts, cuts[1:], strict=False):
            hi = nxt - 1
            sinks = [t.sink for t in filtered
                     if any(a <= lo and hi <= b for a, b in t.ranges or ())]
            if not sinks:
                continue
            for value, mask in vlan_ranges_to_masks([(lo, hi)]):
                k, v = vlan_vid_match(value, mask)
                flows.append(
                    Flow.make(table, base + 1, {**match, k: v}, _copy(plain + sinks, patch)))
    return flows


def compile_host(
    desired: DesiredState,
    ports: Mapping[str, PortLike],
    facts: BridgeFacts,
    host: str | None = None,
    continuation: str = "NORMAL",
    mirror_vlans: Mapping[tuple[str, str], int] | None = None,
    reserved_vlans: Iterable[int] = (),
) -> Compiled:
    """Compile the full set of taas flows of one host and the status of each resource.

    ``mirror_vlans``: the tap mirrors' local VLANs the switch may hold (kept, see
    ``assign_mirror_vlans``); ``reserved_vlans``: mirror-range VLANs of unknown owner on it.
    """
    host = host or desired.host
    flows: dict[str, set[Flow]] = static_flows(facts)
    statuses: list[ResourceStatus] = []
    used_ids: set[int] = set()

    # --- ports that are not (provably) in their network here: never hooked -----------------
    port_err = unwired_ports(desired, ports)

    # --- tap services: where does each sink VLAN go? ---------------------------------------
    service_err: dict[str, str] = {}
    remote_path: dict[int, tuple[int, int]] = {}  # taas_id -> (vni, vxlan ofport)
    for s in desired.tap_services:
        if not 1 <= s.taas_id < T.MIRROR_VLAN_FIRST:
            # Never remapped: a taas_id in the tap mirrors' range would share their VLANs.
            service_err[s.id] = (f"taas_id {s.taas_id} is outside 1-{T.MIRROR_VLAN_FIRST - 1}"
                                 " (4000-4094 are the tap mirrors' local VLANs)")
            continue
        if s.dest_host == host:
            mon = ports.get(s.port_id)
            if mon is None:
                service_err[s.id] = "destination port not on this host"
                continue
            if mon.port_id in port_err:
                service_err[s.id] = f"destination {port_err[mon.port_id]}"
                continue
            t = s.taas_id
            flows[BR_INT].add(Flow.make(
                T.INT_CLASSIFY, T.PRIO_DELIVER,
                {"in_port": str(facts.int_patch_tap), "dl_vlan": str(t)},
                f"pop_vlan,{output(mon.ofport)}"))
            flows[BR_TAP].add(Flow.make(
                T.TAP_CLASSIFY, T.PRIO_TAP,
                {"in_port": str(facts.tap_patch_int), "dl_vlan": str(t)}, "IN_PORT"))
            flows[BR_TAP].add(Flow.make(
                T.TAP_CLASSIFY, T.PRIO_TAP,
                {"in_port": str(facts.tap_patch_tun), "dl_vlan": str(t)},
                output(facts.tap_patch_int)))
            flows[BR_TUN].add(Flow.make(
                T.TUN_CLASSIFY, T.PRIO_TUN, {"tun_id": f"{s.vni:#x}"},
                f"{push_vlan(t)},{output(facts.tun_patch_tap)}"))
            used_ids.add(t)
        elif s.dest_host is None:
            service_err[s.id] = "destination port is not bound to any host"
            continue
        elif not s.dest_tunnel_ip:
            service_err[s.id] = f"destination host {s.dest_host} has no tunnel IP"
            continue
        elif s.dest_tunnel_ip not in facts.vxlan_ports:
            service_err[s.id] = f"no tunnel port to {s.dest_tunnel_ip} on the tunnel bridge"
            continue
        else:
            remote_path[s.taas_id] = (s.vni, facts.vxlan_ports[s.dest_tunnel_ip])
    services = {s.id: s for s in desired.tap_services}
    for s in desired.tap_services:
        err = service_err.get(s.id)
        statuses.append(ResourceStatus("tap_service", s.id, "ERROR" if err else "ACTIVE", err))

    # --- tap flows and tap mirrors -> copy rules ---------------------------------------------
    taps: list[_Tap] = []
    remote_used: set[int] = set()
    for f in desired.tap_flows:
        svc = services.get(f.tap_service_id)
        facts_src = desired.ports.get(f.source_port)
        src = ports.get(f.source_port)
        source_here = src is not None or (facts_src is not None and facts_src.host == host)
        err: str | None = None
        if svc is None:
            err = "tap service not in this host's desired state"
        elif not source_here:
            # Listed because the destination is here: this host only delivers.
            err = service_err.get(svc.id)
        elif src is None:
            err = "source port not on this host"
        elif src.port_id in port_err:
            err = f"source {port_err[src.port_id]}"
        elif svc.id in service_err:
            err = service_err[svc.id]
        else:
            try:
                ranges = parse_vlan_filter(f.vlan_filter)
            except ValueError as e:
                err = str(e)
            else:
                taps.append(_Tap(src.port_id, f.direction in ("OUT", "BOTH"),
                                 f.direction in ("IN", "BOTH"), svc.taas_id,
                                 tuple(ranges) if ranges is not None else None,
                                 ("tap_flow", f.id)))
                used_ids.add(svc.taas_id)
                if svc.taas_id in remote_path:
                    remote_used.add(svc.taas_id)
        statuses.append(ResourceStatus("tap_flow", f.id, "ERROR" if err else "ACTIVE", err))

    mirror_vlans = assign_mirror_vlans(desired.tap_mirrors, mirror_vlans, reserved_vlans)
    for m in desired.tap_mirrors:
        src = ports.get(m.port_id)
        err = None
        if src is None:
            err = "port not on this host"
        elif src.port_id in port_err:
            err = port_err[src.port_id]
        else:
            for d in sorted(m.directions):
                vlan = mirror_vlans.get((m.id, d))
                ofport = facts.mirror_ports.get((m.id, d))
                if vlan is None:
                    err = "no free local VLAN for the tap mirror"
                elif ofport is None:
                    err = f"no {m.mirror_type} port for direction {d}"
                if err:
                    break
            if err is None:
                for d in sorted(m.directions):
                    vlan = mirror_vlans[(m.id, d)]
                    taps.append(_Tap(src.port_id, d in ("OUT", "BOTH"), d in ("IN", "BOTH"),
                                     vlan, None, ("tap_mirror", m.id)))
                    flows[BR_TAP].add(Flow.make(
                        T.TAP_CLASSIFY, T.PRIO_TAP,
                        {"in_port": str(facts.tap_patch_int), "dl_vlan": str(vlan)},
                        f"pop_vlan,{output(facts.mirror_ports[(m.id, d)])}"))
        statuses.append(ResourceStatus("tap_mirror", m.id, "ERROR" if err else "ACTIVE", err))

    # --- remote paths actually used by a local source -----------------------------------------
    for t in sorted(remote_used):
        vni, vx = remote_path[t]
        flows[BR_TAP].add(Flow.make(
            T.TAP_CLASSIFY, T.PRIO_TAP, {"in_port": str(facts.tap_patch_int), "dl_vlan": str(t)},
            output(facts.tap_patch_tun)))
        flows[BR_TUN].add(Flow.make(
            T.TUN_CLASSIFY, T.PRIO_TUN, {"in_port": str(facts.tun_patch_tap), "dl_vlan": str(t)},
            f"pop_vlan,{set_tun_id(vni)},{output(vx)}"))

    # --- a broadcast visits every IN-mirrored port of its network: cap their number ----------
    in_srcs: dict[int, set[str]] = defaultdict(set)
    for tap in taps:
        if tap.in_:
            in_srcs[ports[tap.source].local_vlan].add(tap.source)  # type: ignore[index]
    rejected = {pid for srcs in in_srcs.values()
                for pid in sorted(srcs, key=lambda pid: ports[pid].ofport)[
                    T.MAX_IN_PORTS_PER_NETWORK:]}
    if rejected:
        too_many = (f"more than {T.MAX_IN_PORTS_PER_NETWORK} ports of this network "
                    "are mirrored IN on this host")
        bad = {t.resource for t in taps if t.in_ and t.source in rejected}
        taps = [t for t in taps if t.resource not in bad]
        statuses = [replace(st, status="ERROR", reason=too_many)
                    if (st.kind, st.id) in bad else st for st in statuses]

    # --- br-int: OUT and IN tables --------------------------------------------------------------
    patch = facts.int_patch_tap
    out_by_src: dict[str, list[_Tap]] = defaultdict(list)
    in_by_net: dict[int, list[_Tap]] = defaultdict(list)
    for tap in taps:
        p = ports[tap.source]
        if tap.out:
            out_by_src[tap.source].append(tap)
        if tap.in_:
            in_by_net[p.local_vlan].append(tap)  # type: ignore[index]
    for pid, group in out_by_src.items():
        flows[BR_INT].update(_group_flows(
            T.INT_OUT, T.PRIO_COPY, {"in_port": str(ports[pid].ofport)}, group, patch))
    for net, group in in_by_net.items():
        reg = {T.REG_NET: f"{net:#x}"}
        by_src: dict[str, list[_Tap]] = defaultdict(list)
        for tap in group:
            by_src[tap.source].append(tap)
        fan_out: list[str] = []
        for pid, g in sorted(by_src.items(), key=lambda kv: ports[kv[0]].ofport):
            p = ports[pid]
            # Unicast delivered to the port: its MAC in its network.
            flows[BR_INT].update(_group_flows(
                T.INT_IN, T.PRIO_COPY, {**reg, "dl_dst": p.mac.lower()}, g, patch))
            # Broadcast/multicast is delivered to every port of the network but its sender.
            port_reg = {T.REG_PORT: f"{p.ofport:#x}"}
            flows[BR_INT].update(_group_flows(T.INT_IN_BCAST, T.PRIO_COPY, port_reg, g, patch))
            flows[BR_INT].add(Flow.make(T.INT_IN_BCAST, T.PRIO_IN_EXCLUDE,
                                        {**port_reg, "in_port": str(p.ofport)}, "drop"))
            fan_out += [set_reg(T.REG_PORT, p.ofport), resubmit(T.INT_IN_BCAST)]
        flows[BR_INT].add(Flow.make(
            T.INT_IN, T.PRIO_COPY, {**reg, "dl_dst": MULTICAST}, ",".join(fan_out)))

    # --- br-int table 0 hooks: send tapped traffic through OUT/IN, then continue ---------------
    for p in sorted(ports.values(), key=lambda p: p.ofport):
        if not wired(p) or p.port_id in port_err:
            continue  # a dead port's frames are no network's: never copied, never hooked
        steps: list[str] = [set_reg(T.REG_NET, p.local_vlan)]  # type: ignore[arg-type]
        if p.port_id in out_by_src:
            steps.append(resubmit(T.INT_OUT))
        if p.local_vlan in in_by_net:
            steps.append(resubmit(T.INT_IN))
        if len(steps) > 1:
            flows[BR_INT].add(Flow.make(
                T.INT_CLASSIFY, T.PRIO_HOOK, {"in_port": str(p.ofport)},
                f"{clone(*steps)},{continuation}"))
    if facts.int_patch_tun is not None:
        for net in sorted(in_by_net):
            # From other hosts frames carry the local VLAN: strip it so the copy is the frame
            # the VM gets, and take the network context from it.
            flows[BR_INT].add(Flow.make(
                T.INT_CLASSIFY, T.PRIO_HOOK,
                {"in_port": str(facts.int_patch_tun), "dl_vlan": str(net)},
                f"{clone('pop_vlan', set_reg(T.REG_NET, net), resubmit(T.INT_IN))},{continuation}"))

    return Compiled(
        flows={b: frozenset(fs) for b, fs in flows.items()},
        statuses=tuple(statuses),
        taas_ids=tuple(sorted(used_ids)),
        mirror_vlans=mirror_vlans,
    )


def compile_flows(
    desired: DesiredState, ports: Mapping[str, PortLike], facts: BridgeFacts,
    continuation: str = "NORMAL",
) -> dict[str, frozenset[Flow]]:
    """The flows of each bridge ("int", "tap", "tun") for ``desired`` on this host."""
    return compile_host(desired, ports, facts, continuation=continuation).flows
