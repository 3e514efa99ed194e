"""The pure flow compiler: a host's desired state + local facts -> the flows of each bridge.

No I/O here. ``compile_host`` returns every flow taas wants on br-int, br-tap and br-tun, and a
status (ACTIVE, or ERROR with a reason) for every resource of the desired state. It runs one
phase per concern, in pipeline order; the tables they write are declared in ``tables.py`` and
described one by one in docs/pipeline.md. ``copy_vlans`` reads the copy VLANs back from flows
(the inverse of the phases that write them; ``held_vlans`` of a dump).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from taas.agent.ovs import tables as T
from taas.agent.ovs.context import assign_mirror_vlans, unwired_ports, wired
from taas.agent.ovs.filters import FilterError, rule_matches
from taas.agent.ovs.flows import (
    MULTICAST,
    Flow,
    FlowSet,
    clone,
    mark_match,
    meter,
    output,
    output_trunc,
    push_vlan,
    resubmit,
    set_mark,
    set_reg,
    set_tun_id,
    vlan_ranges_to_masks,
    vlan_vid_match,
)
from taas.agent.ovs.limits import deliveries, flow_limits
from taas.agent.ovs.meters import MeterKey, MeterSpec, limit_keys, limits_error, meters_of
from taas.agent.ovs.readback import copy_vlans, held_taas_ids, held_vlans
from taas.agent.ovs.tables import BR_INT, BR_TAP, BR_TUN
from taas.agent.ports import LocalPort
from taas.common.desired_state import (
    DesiredState,
    ResourceStatus,
    TapFilterState,
)
from taas.common.vlans import parse_vlan_filter

__all__ = ["BR_INT", "BR_TAP", "BR_TUN", "BridgeFacts", "Compiled", "compile_host",
           "copy_vlans", "held_taas_ids", "held_vlans", "static_flows"]


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


# (resource kind, resource id, counter, tap mirror direction or None): what a flow counts.
Counted = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Compiled:
    flows: dict[str, frozenset[Flow]]  # "int" / "tap" / "tun" -> flows
    statuses: tuple[ResourceStatus, ...]
    taas_ids: tuple[int, ...]  # taas_ids that appear in the flows
    mirror_vlans: dict[tuple[str, str], int]  # local VLAN of each tap-mirror direction
    # The meters the flows use, per bridge (rate limits: taas/agent/ovs/meters.py)
    meters: dict[str, frozenset[MeterSpec]] = field(default_factory=dict)
    # The flows whose OpenFlow counters count for a resource (taas/agent/ovs/counters.py):
    # flow -> (kind, id, counter, tap mirror direction or None) of every count it feeds.
    counted: dict[Flow, tuple[Counted, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Tap:
    """One copy rule: frames of ``source`` in ``direction`` go to the sink VLAN ``sink``."""

    source: str  # port id
    out: bool
    in_: bool
    sink: int  # VLAN id pushed on the copy (taas_id, or a tap mirror's local VLAN)
    ranges: tuple[tuple[int, int], ...] | None  # vlan_filter, None = every frame
    resource: tuple[str, str] = ("", "")  # (kind, id) of the tap flow / tap mirror
    filter_key: int | None = None  # REG_FILTER value of its tap filter's flows (one direction)
    snaplen: int = 0  # bytes of each copy the exit keeps (0: the whole frame)
    mark: int = 0  # pkt_mark set on the copy (meter key << 16 | snaplen), 0: none


@dataclass
class _Build:
    """What the phases of one compile write: flows, statuses, taas_ids in use."""

    facts: BridgeFacts
    flows: FlowSet = field(default_factory=FlowSet)
    statuses: list[ResourceStatus] = field(default_factory=list)
    used_ids: set[int] = field(default_factory=set)
    copy_actions: dict[tuple[int, int], str] = field(default_factory=dict)  # (sink, mark) ->
    meters: dict[MeterKey, MeterSpec] = field(default_factory=dict)  # every limit of the state
    used_meters: dict[str, set[MeterSpec]] = field(
        default_factory=lambda: {br: set() for br in (BR_INT, BR_TAP, BR_TUN)})
    counted: dict[Flow, list[Counted]] = field(default_factory=dict)

    def count(self, flow: Flow, kind: str, rid: str, counter: str,
              direction: str | None = None) -> None:
        """Each frame ``flow`` takes counts once for (kind, rid)'s ``counter``."""
        self.counted.setdefault(flow, []).append((kind, rid, counter, direction))

    def status(self, kind: str, rid: str, err: str | None) -> None:
        self.statuses.append(ResourceStatus(kind, rid, "ERROR" if err else "ACTIVE", err))  # type: ignore[arg-type]

    def copy(self, taps: Iterable[_Tap]) -> str:
        # One copy per matching tap flow (two tap flows of one service that match a frame each
        # deliver it), in a stable order so the text is canonical. A filtered tap flow's copy
        # is decided in the FILTER table (its key in REG_FILTER), before anything is copied.
        acts = []
        for s, key, mark in sorted((t.sink, t.filter_key or 0, t.mark) for t in taps):
            if key:
                acts.append(clone(set_reg(T.REG_FILTER, key), resubmit(T.INT_FILTER)))
                continue
            a = self.copy_actions.get((s, mark))
            if a is None:
                a = self.copy_actions[(s, mark)] = clone(self.tail(s, mark))
            acts.append(a)
        return ",".join(acts) if acts else "drop"

    def tail(self, sink: int, mark: int) -> str:
        """What makes a copy inside its clone: its pkt_mark (if any), its sink VLAN, br-tap."""
        steps = [set_mark(mark)] if mark else []
        return ",".join([*steps, push_vlan(sink), output(self.facts.int_patch_tap)])

    def limited(self, bridge: str, table: T.Table, second: T.Table, prio: int,
                match: dict[str, str], keys: Iterable[MeterKey], tail: str) -> Flow:
        """A flow that passes its copies through the meters of ``keys`` (in the first flow a
        copy meets after a patch port: see tables.LIMIT_ACTIONS), then does ``tail``. A second
        meter is in ``second`` (one meter per flow), with the same match."""
        specs = [self.meters[k] for k in keys if k in self.meters]
        self.used_meters[bridge].update(specs)
        if len(specs) < 2:
            return self.flows.add(table, prio, match,
                                  ",".join([*(meter(m.meter_id) for m in specs), tail]))
        first = self.flows.add(table, prio, match,
                               f"{meter(specs[0].meter_id)},{resubmit(second)}")
        self.flows.add(second, prio, match, f"{meter(specs[1].meter_id)},{tail}")
        return first  # the flow every copy meets (its counters: before the meters)


def static_flows(f: BridgeFacts) -> dict[str, frozenset[Flow]]:
    """Flows that exist whatever the desired state: drops on the taas patch ports, canaries."""
    out = FlowSet()
    for table in T.CANARY.values():
        out.add(table, 0, None, "drop")
    out.add(T.INT_CLASSIFY, T.PRIO_DROP_PATCH, {"in_port": str(f.int_patch_tap)}, "drop")
    out.add(T.TAP_CLASSIFY, 0, None, "drop")
    out.add(T.TUN_CLASSIFY, T.PRIO_TUN_DROP, {"in_port": str(f.tun_patch_tap)}, "drop")
    return out.frozen()


def compile_host(
    desired: DesiredState,
    ports: Mapping[str, LocalPort],
    facts: BridgeFacts,
    host: str | None = None,
    continuation: str = "NORMAL",
    mirror_vlans: Mapping[tuple[str, str], int] | None = None,
    reserved_vlans: Iterable[int] = (),
    hook_table: int = T.INT_CLASSIFY.number,
) -> Compiled:
    """Compile the full set of taas flows of one host and the status of each resource.

    ``mirror_vlans``: the tap mirrors' local VLANs the switch may hold (kept, see
    ``assign_mirror_vlans``); ``reserved_vlans``: mirror-range VLANs of unknown owner on it.
    """
    host = host or desired.host
    b = _Build(facts, meters=meters_of(desired))
    for br, fs in static_flows(facts).items():
        b.flows.by_bridge[br].update(fs)
    port_err = unwired_ports(desired, ports)
    service_err, remote_path = _services(b, desired, ports, host, port_err)
    taps, remote_used = _tap_flow_rules(b, desired, ports, host, port_err, service_err,
                                        remote_path)
    taps = flow_limits(b, desired, taps, remote_path)
    taps = _filters(b, desired, taps)
    assigned = assign_mirror_vlans(desired.tap_mirrors, mirror_vlans, reserved_vlans)
    taps += _tap_mirror_rules(b, desired, ports, port_err, assigned)
    deliveries(b, desired, ports, host, service_err, taps)
    _remote_paths(b, {t: remote_path[t] for t in remote_used}, taps)
    taps = _cap_in_ports(b, taps, ports)
    out_by_src, in_by_net = _copy_tables(b, taps, ports)
    _hooks(b, ports, port_err, out_by_src, in_by_net, continuation, hook_table)
    return Compiled(flows=b.flows.frozen(), statuses=tuple(b.statuses),
                    taas_ids=tuple(sorted(b.used_ids)), mirror_vlans=assigned,
                    meters={br: frozenset(ms) for br, ms in b.used_meters.items()},
                    counted={f: tuple(c) for f, c in b.counted.items()})


def _services(
    b: _Build, desired: DesiredState, ports: Mapping[str, LocalPort], host: str,
    port_err: Mapping[str, str],
) -> tuple[dict[str, str], dict[int, tuple[int, int]]]:
    """Tap services: where each sink VLAN goes. A local monitor gets its delivery path on
    every bridge; a remote one is a path (VNI, VXLAN port) that local sources may use.
    Returns (service id -> error, taas_id -> remote path)."""
    service_err: dict[str, str] = {}
    remote_path: dict[int, tuple[int, int]] = {}
    f = b.facts
    for s in desired.tap_services:
        err = limits_error(None, s.max_pps, s.max_kbps)
        if err:
            pass  # (reported below)
        elif not 1 <= s.taas_id < T.MIRROR_VLAN_FIRST:
            # Never remapped: a taas_id in the tap mirrors' range would share their VLANs.
            err = (f"taas_id {s.taas_id} is outside 1-{T.MIRROR_VLAN_FIRST - 1}"
                   f" ({T.MIRROR_VLAN_FIRST}-{T.MIRROR_VLAN_LAST} are the tap mirrors' local "
                   "VLANs)")
        elif s.dest_host == host:
            mon = ports.get(s.port_id)
            if mon is None:
                err = "destination port not on this host"
            elif mon.port_id in port_err:
                err = f"destination {port_err[mon.port_id]}"
            else:
                t = s.taas_id
                # (delivery to the monitor port: _deliveries)
                b.flows.add(T.TAP_CLASSIFY, T.PRIO_TAP,
                            {"in_port": str(f.tap_patch_int), "dl_vlan": str(t)}, "IN_PORT")
                b.flows.add(T.TAP_CLASSIFY, T.PRIO_TAP,
                            {"in_port": str(f.tap_patch_tun), "dl_vlan": str(t)},
                            output(f.tap_patch_int))
                b.flows.add(T.TUN_CLASSIFY, T.PRIO_TUN_IN, {"tun_id": f"{s.vni:#x}"},
                            f"{push_vlan(t)},{output(f.tun_patch_tap)}")
                b.used_ids.add(t)
        elif s.dest_host is None:
            err = "destination port is not bound to any host"
        elif not s.dest_tunnel_ip:
            err = f"destination host {s.dest_host} has no tunnel IP"
        elif s.dest_tunnel_ip not in f.vxlan_ports:
            err = f"no tunnel port to {s.dest_tunnel_ip} on the tunnel bridge"
        else:
            remote_path[s.taas_id] = (s.vni, f.vxlan_ports[s.dest_tunnel_ip])
        if err:
            service_err[s.id] = err
    for s in desired.tap_services:
        b.status("tap_service", s.id, service_err.get(s.id))
    return service_err, remote_path


def _tap_flow_rules(
    b: _Build, desired: DesiredState, ports: Mapping[str, LocalPort], host: str,
    port_err: Mapping[str, str], service_err: Mapping[str, str],
    remote_path: Mapping[int, tuple[int, int]],
) -> tuple[list[_Tap], set[int]]:
    """Tap flows -> copy rules of local sources; (rules, taas_ids whose remote path is used)."""
    services = {s.id: s for s in desired.tap_services}
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
                err = f"vlan_filter: {e}"
            else:
                err = _filter_error(f.tap_filter) or limits_error(f.snaplen, f.max_pps,
                                                                  f.max_kbps)
            if err is None:
                taps.append(_Tap(src.port_id, f.direction in ("OUT", "BOTH"),
                                 f.direction in ("IN", "BOTH"), svc.taas_id,
                                 tuple(ranges) if ranges is not None else None,
                                 ("tap_flow", f.id), snaplen=f.snaplen or 0,
                                 mark=f.snaplen or 0))
                b.used_ids.add(svc.taas_id)
                if svc.taas_id in remote_path:
                    remote_used.add(svc.taas_id)
        b.status("tap_flow", f.id, err)
    return taps, remote_used


def _filter_error(flt: TapFilterState | None) -> str | None:
    for rule in flt.rules if flt is not None else ():
        try:
            rule_matches(rule)
        except (FilterError, ValueError) as e:
            return f"tap filter {flt.id} rule {rule.priority}: {e}"  # type: ignore[union-attr]
    return None


_FILTER_COUNTER = {"mirror": "mirrored", "skip": "filtered"}


def _filters(b: _Build, desired: DesiredState, taps: list[_Tap]) -> list[_Tap]:
    """The FILTER table: each filtered tap flow gets one key per direction it copies (REG_FILTER,
    numbered in tap flow id order); its rules, lowest priority number first, then its
    default_action, decide whether the copy is made. Unfiltered taps are unchanged."""
    filters = {f.id: f.tap_filter for f in desired.tap_flows if f.tap_filter is not None}
    out: list[_Tap] = []
    key = 0
    for tap in sorted(taps, key=lambda t: t.resource):
        flt = filters.get(tap.resource[1]) if tap.resource[0] == "tap_flow" else None
        if flt is None:
            out.append(tap)
            continue
        for direction, on in (("OUT", tap.out), ("IN", tap.in_)):
            if not on:
                continue
            key += 1
            out.append(replace(tap, out=direction == "OUT", in_=direction == "IN",
                               filter_key=key))
            reg = {T.REG_FILTER: f"{key:#x}"}
            # Already inside the OUT/IN table's clone(): push and output directly.
            mirror, skip = b.tail(tap.sink, tap.mark), "drop"
            for rule in flt.rules:
                if rule.direction not in (None, direction):
                    continue
                for m in rule_matches(rule):
                    b.count(b.flows.add(T.INT_FILTER, T.PRIO_FILTER_RULE - rule.priority,
                                        reg | m, mirror if rule.action == "mirror" else skip),
                            *tap.resource, _FILTER_COUNTER[rule.action])
            b.count(b.flows.add(T.INT_FILTER, T.PRIO_FILTER_DEFAULT, reg,
                                mirror if flt.default_action == "mirror" else skip),
                    *tap.resource, _FILTER_COUNTER[flt.default_action])
    return out


def _tap_mirror_rules(
    b: _Build, desired: DesiredState, ports: Mapping[str, LocalPort],
    port_err: Mapping[str, str], vlans: Mapping[tuple[str, str], int],
) -> list[_Tap]:
    """Tap mirrors -> copy rules (one per direction, to its local VLAN) and br-tap's exits."""
    taps: list[_Tap] = []
    f = b.facts
    for m in desired.tap_mirrors:
        src = ports.get(m.port_id)
        err = limits_error(m.snaplen, m.max_pps, m.max_kbps)
        if err:
            pass  # (reported below)
        elif src is None:
            err = "port not on this host"
        elif src.port_id in port_err:
            err = port_err[src.port_id]
        else:
            for d in sorted(m.directions):
                if (m.id, d) not in vlans:
                    err = "no free local VLAN for the tap mirror"
                elif (m.id, d) not in f.mirror_ports:
                    err = f"no {m.mirror_type} port for direction {d}"
                if err:
                    break
            if err is None:
                for d in sorted(m.directions):
                    vlan = vlans[(m.id, d)]
                    taps.append(_Tap(src.port_id, d in ("OUT", "BOTH"), d in ("IN", "BOTH"),
                                     vlan, None, ("tap_mirror", m.id)))
                    port = f.mirror_ports[(m.id, d)]
                    # Its meters and truncation in its br-tap flow (its own VLAN: no mark).
                    exit_ = (output_trunc(port, m.snaplen + T.POPPED_TAG) if m.snaplen
                             else output(port))
                    b.count(b.limited(BR_TAP, T.TAP_CLASSIFY, T.TAP_LIMIT, T.PRIO_TAP,
                                      {"in_port": str(f.tap_patch_int), "dl_vlan": str(vlan)},
                                      limit_keys("tap_mirror", m.id, d), f"pop_vlan,{exit_}"),
                            "tap_mirror", m.id, "sent", d)
        b.status("tap_mirror", m.id, err)
    return taps


def _remote_paths(b: _Build, used: Mapping[int, tuple[int, int]], taps: list[_Tap]) -> None:
    """Remote paths actually used by a local source: br-tap -> br-tun -> VXLAN; copies of a
    snaplen (pkt_mark's low bits) are truncated at the VXLAN output, before encapsulation,
    with pkt_mark cleared first (OVS's tunnel routing looks routes up by pkt_mark)."""
    f = b.facts
    for t, (vni, vx) in sorted(used.items()):
        b.flows.add(T.TAP_CLASSIFY, T.PRIO_TAP,
                    {"in_port": str(f.tap_patch_int), "dl_vlan": str(t)}, output(f.tap_patch_tun))
        match = {"in_port": str(f.tun_patch_tap), "dl_vlan": str(t)}
        b.flows.add(T.TUN_CLASSIFY, T.PRIO_TUN, match,
                    f"pop_vlan,{set_tun_id(vni)},{output(vx)}")
        for n in sorted({tap.snaplen for tap in taps if tap.sink == t and tap.snaplen}):
            b.flows.add(T.TUN_CLASSIFY, T.PRIO_TUN_TRUNC,
                        {**match, "pkt_mark": mark_match(n, T.MARK_SNAPLEN_MASK)},
                        f"pop_vlan,{set_mark(0)},{set_tun_id(vni)},"
                        f"{output_trunc(vx, n + T.POPPED_TAG)}")


def _cap_in_ports(b: _Build, taps: list[_Tap], ports: Mapping[str, LocalPort]) -> list[_Tap]:
    """A broadcast visits every IN-mirrored port of its network: cap their number."""
    in_srcs: dict[int, set[str]] = defaultdict(set)
    for tap in taps:
        if tap.in_:
            in_srcs[ports[tap.source].local_vlan].add(tap.source)  # type: ignore[index]
    rejected = {pid for srcs in in_srcs.values()
                for pid in sorted(srcs, key=lambda pid: ports[pid].ofport)[
                    T.MAX_IN_PORTS_PER_NETWORK:]}
    if not rejected:
        return taps
    too_many = (f"more than {T.MAX_IN_PORTS_PER_NETWORK} ports of this network "
                "are mirrored IN on this host")
    bad = {t.resource for t in taps if t.in_ and t.source in rejected}
    b.statuses = [replace(st, status="ERROR", reason=too_many)
                  if (st.kind, st.id) in bad else st for st in b.statuses]
    return [t for t in taps if t.resource not in bad]


def _copy_tables(
    b: _Build, taps: list[_Tap], ports: Mapping[str, LocalPort],
) -> tuple[dict[str, list[_Tap]], dict[int, list[_Tap]]]:
    """br-int's OUT and IN tables; returns the copy rules by OUT source and by IN network."""
    out_by_src: dict[str, list[_Tap]] = defaultdict(list)
    in_by_net: dict[int, list[_Tap]] = defaultdict(list)
    for tap in taps:
        if tap.out:
            out_by_src[tap.source].append(tap)
        if tap.in_:
            in_by_net[ports[tap.source].local_vlan].append(tap)  # type: ignore[index]
    for pid, group in out_by_src.items():
        _group_flows(b, T.INT_OUT, {"in_port": str(ports[pid].ofport)}, group)
    for net, group in in_by_net.items():
        reg = {T.REG_NET: f"{net:#x}"}
        by_src: dict[str, list[_Tap]] = defaultdict(list)
        for tap in group:
            by_src[tap.source].append(tap)
        fan_out: list[str] = []
        for pid, g in sorted(by_src.items(), key=lambda kv: ports[kv[0]].ofport):
            p = ports[pid]
            # Unicast delivered to the port: its MAC in its network.
            _group_flows(b, T.INT_IN, {**reg, "dl_dst": p.mac.lower()}, g)
            # Broadcast/multicast is delivered to every port of the network but its sender.
            port_reg = {T.REG_PORT: f"{p.ofport:#x}"}
            _group_flows(b, T.INT_IN_BCAST, port_reg, g)
            b.flows.add(T.INT_IN_BCAST, T.PRIO_IN_EXCLUDE,
                        {**port_reg, "in_port": str(p.ofport)}, "drop")
            fan_out += [set_reg(T.REG_PORT, p.ofport), resubmit(T.INT_IN_BCAST)]
        b.flows.add(T.INT_IN, T.PRIO_COPY, {**reg, "dl_dst": MULTICAST}, ",".join(fan_out))
    return out_by_src, in_by_net


def _group_flows(b: _Build, table: T.Table, match: dict[str, str], taps: list[_Tap]) -> None:
    """Flows for one match group: unfiltered taps at PRIO_COPY, vlan_filter pieces one above.

    The VLAN space is cut at every filter boundary of the group, so that each piece carries every
    sink that wants it: one lookup in the table yields every copy (nothing is overwritten).
    """
    plain = [t for t in taps if t.ranges is None]
    _count_copies(b, b.flows.add(table, T.PRIO_COPY, match, b.copy(plain)), plain)
    filtered = [t for t in taps if t.ranges is not None]
    if not filtered:  # the common case: no vlan_filter
        return
    cuts = sorted({a for t in filtered for a, _ in t.ranges or ()}
                  | {z + 1 for t in filtered for _, z in t.ranges or ()})
    for lo, nxt in zip(cuts, cuts[1:], strict=False):
        hi = nxt - 1
        sinks = [t for t in filtered if any(a <= lo and hi <= z for a, z in t.ranges or ())]
        if not sinks:
            continue
        for value, mask in vlan_ranges_to_masks([(lo, hi)]):
            k, v = vlan_vid_match(value, mask)
            _count_copies(b, b.flows.add(table, T.PRIO_COPY + 1, {**match, k: v},
                                         b.copy(plain + sinks)), plain + sinks)


def _count_copies(b: _Build, flow: Flow, taps: list[_Tap]) -> None:
    """A copy flow counts for its unfiltered tap flows (a filtered one counts in the FILTER
    table, after its filter; a tap mirror at its exit on br-tap)."""
    for t in taps:
        if t.filter_key is None and t.resource[0] == "tap_flow":
            b.count(flow, *t.resource, "mirrored")


def hooks_table(number: int) -> T.Table:
    """The table of the per-port hooks: br-int table 0 by default; beside an L2 agent whose
    pipeline reaches another table only with frames that passed its anti-spoofing (Neutron's
    table 60, noop firewall), that one, so forged frames are neither copied nor let through
    (docs/neutron.md). Delivery from br-tap stays in table 0."""
    if number == T.INT_CLASSIFY.number:
        return T.INT_CLASSIFY
    return replace(T.INT_CLASSIFY, number=number, name="HOOK",
                   priorities=frozenset({T.PRIO_HOOK}))


def _hooks(
    b: _Build, ports: Mapping[str, LocalPort], port_err: Mapping[str, str],
    out_by_src: Mapping[str, list[_Tap]], in_by_net: Mapping[int, list[_Tap]],
    continuation: str, hook_table: int = T.INT_CLASSIFY.number,
) -> None:
    """br-int table 0 (or `hook_table`): send tapped traffic through OUT/IN, then continue
    (the L2 agent's)."""
    table = hooks_table(hook_table)
    for p in sorted(ports.values(), key=lambda p: p.ofport):
        if not wired(p) or p.port_id in port_err:
            continue  # a dead port's frames are no network's: never copied, never hooked
        steps: list[str] = [set_reg(T.REG_NET, p.local_vlan)]  # type: ignore[arg-type]
        if p.port_id in out_by_src:
            steps.append(resubmit(T.INT_OUT))
        if p.local_vlan in in_by_net:
            steps.append(resubmit(T.INT_IN))
        if len(steps) > 1:
            b.flows.add(table, T.PRIO_HOOK, {"in_port": str(p.ofport)}, clone(*steps),
                        continuation)
    if b.facts.int_patch_tun is not None:
        for net in sorted(in_by_net):
            # From other hosts frames carry the local VLAN: strip it so the copy is the frame
            # the VM gets, and take the network context from it.
            b.flows.add(table, T.PRIO_HOOK,
                        {"in_port": str(b.facts.int_patch_tun), "dl_vlan": str(net)},
                        clone("pop_vlan", set_reg(T.REG_NET, net), resubmit(T.INT_IN)),
                        continuation)
