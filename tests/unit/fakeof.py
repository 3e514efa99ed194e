"""A small fake OpenFlow switch that runs taas's compiled flows and says where a packet goes.

It understands exactly the matches and actions the compiler emits (and fails loudly on anything
else), follows patch ports between br-int, br-tap and br-tun, and treats NORMAL as "tenant
forwarding". Registers are per bridge (reset when a packet crosses a patch port), as in OVS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from taas.agent.ovs.compile import BR_INT, BR_TAP, BR_TUN, BridgeFacts
from taas.agent.ovs.flows import Flow


@dataclass(frozen=True)
class Pkt:
    dl_src: str
    dl_dst: str
    vlans: tuple[int, ...] = ()  # outermost first
    tun_id: int = 0
    payload: str = ""


@dataclass(frozen=True)
class Out:
    """A packet leaving the switches: (bridge, ofport) or ("NORMAL", bridge) for tenant L2."""

    bridge: str
    port: int | str
    pkt: Pkt


@dataclass
class _Ctx:
    in_port: int
    pkt: Pkt
    regs: dict[str, int] = field(default_factory=dict)


def split_actions(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        out.append(cur)
    return out


def _mac_match(value: str, mac: str) -> bool:
    want, _, mask = value.partition("/")
    w = int(want.replace(":", ""), 16)
    m = int(mask.replace(":", ""), 16) if mask else (1 << 48) - 1
    return (int(mac.replace(":", ""), 16) & m) == (w & m)


def _matches(flow: Flow, ctx: _Ctx) -> bool:
    p = ctx.pkt
    for tok in flow.match:
        k, _, v = tok.partition("=")
        if k == "in_port":
            ok = ctx.in_port == int(v)
        elif k == "dl_vlan":
            ok = bool(p.vlans) and p.vlans[0] == int(v)
        elif k == "vlan_tci":
            val, _, mask = v.partition("/")
            tci = (0x1000 | p.vlans[0]) if p.vlans else 0
            ok = (tci & int(mask, 16)) == (int(val, 16) & int(mask, 16))
        elif k == "dl_dst":
            ok = _mac_match(v, p.dl_dst)
        elif k == "tun_id":
            ok = p.tun_id == int(v, 16)
        elif k.startswith("reg"):
            ok = ctx.regs.get(k, 0) == int(v, 16)
        else:
            raise AssertionError(f"fake switch does not know match {tok}")
        if not ok:
            return False
    return True


# Every match field the compiler uses, as (value, mask) over the field's bits. dl_vlan and
# vlan_tci are one field (the TCI): dl_vlan=V is vlan_tci=0x1000|V/0x1fff.
_FULL = (1 << 64) - 1


def _field(tok: str) -> tuple[str, int, int]:
    k, _, v = tok.partition("=")
    if k == "dl_vlan":
        return "vlan_tci", 0x1000 | int(v), 0x1FFF
    if k == "vlan_tci":
        val, _, mask = v.partition("/")
        return k, int(val, 16), int(mask, 16) if mask else 0xFFFF
    if k == "dl_dst":
        val, _, mask = v.partition("/")
        return k, int(val.replace(":", ""), 16), (int(mask.replace(":", ""), 16) if mask
                                                   else (1 << 48) - 1)
    if k in ("in_port",):
        return k, int(v), _FULL
    if k == "tun_id" or k.startswith("reg"):
        return k, int(v, 16), _FULL
    raise AssertionError(f"fake switch does not know match {tok}")


def _overlap(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]) -> bool:
    """Can one packet match both? Only if no field both match on tells them apart."""
    return all(((va ^ vb) & ma & mb) == 0
               for k, (va, ma) in a.items() if k in b for vb, mb in (b[k],))


def refuse_overlaps(bridge: str, flows: list[Flow]) -> None:
    """Two flows of one table and priority that one packet can match: OpenFlow leaves the
    choice undefined (and OVS replaces one with the other if their matches are equal), so the
    fake refuses them instead of silently taking one."""
    groups: dict[tuple[int, int], list[dict[str, tuple[int, int]]]] = {}
    for f in flows:
        fields = {k: (v, m) for k, v, m in map(_field, f.match)}
        groups.setdefault((f.table, f.priority), []).append(fields)
    for (table, prio), group in groups.items():
        # Bucket by the fields every flow of the group matches exactly: flows with different
        # exact values never overlap, so only flows of one bucket are compared pairwise.
        exact = set.intersection(*({k for k, (_, m) in g.items() if m in (_FULL, 0x1FFF)}
                                   for g in group))
        buckets: dict[tuple[tuple[int, int], ...], list[dict[str, tuple[int, int]]]] = {}
        for g in group:
            buckets.setdefault(tuple(g[k] for k in sorted(exact)), []).append(g)
        for bucket in buckets.values():
            for i, a in enumerate(bucket):
                for b in bucket[i + 1:]:
                    assert not _overlap(a, b), (
                        f"br-{bridge} table {table} priority {prio}: overlapping flows {a} {b}")


class FakeHost:
    """The three bridges of one host, loaded with compiled flows plus the L2 agent's own."""

    def __init__(self, flows: dict[str, frozenset[Flow]], facts: BridgeFacts,
                 vxlan_ports: tuple[int, ...] = ()) -> None:
        self.facts = facts
        l2 = {
            BR_INT: {Flow(0, 0, (), "NORMAL")},
            BR_TAP: set(),
            # Neutron's classification of tunnel ports (stands for table 4 onwards: tenant).
            BR_TUN: {Flow(0, 1, (f"in_port={p}",), "NORMAL") for p in vxlan_ports},
        }
        self.tables: dict[str, list[Flow]] = {}
        for br in (BR_INT, BR_TAP, BR_TUN):
            allf = list(flows.get(br, ())) + list(l2[br])
            refuse_overlaps(br, allf)
            self.tables[br] = sorted(allf, key=lambda f: -f.priority)
        self.patches = {
            (BR_INT, facts.int_patch_tap): (BR_TAP, facts.tap_patch_int),
            (BR_TAP, facts.tap_patch_int): (BR_INT, facts.int_patch_tap),
            (BR_TAP, facts.tap_patch_tun): (BR_TUN, facts.tun_patch_tap),
            (BR_TUN, facts.tun_patch_tap): (BR_TAP, facts.tap_patch_tun),
        }

    def send(self, bridge: str, in_port: int, pkt: Pkt) -> list[Out]:
        """Every place the packet (and its copies) end up."""
        outs: list[Out] = []
        self._table(bridge, 0, _Ctx(in_port, pkt), outs, depth=0)
        return outs

    def _table(self, br: str, table: int, ctx: _Ctx, outs: list[Out], depth: int) -> None:
        assert depth < 32, "loop"
        for f in self.tables[br]:
            if f.table == table and _matches(f, ctx):
                self._run(br, split_actions(f.actions), ctx, outs, depth)
                return
        # table miss: drop

    def _run(self, br: str, acts: list[str], ctx: _Ctx, outs: list[Out], depth: int) -> None:
        for a in acts:
            p = ctx.pkt
            if a == "drop":
                return
            if a.startswith("clone(") and a.endswith(")"):
                sub = _Ctx(ctx.in_port, p, dict(ctx.regs))
                self._run(br, split_actions(a[6:-1]), sub, outs, depth + 1)
            elif a == "push_vlan:0x8100":
                ctx.pkt = replace(p, vlans=(0,) + p.vlans)
            elif a.startswith("set_field:") and a.endswith("->vlan_vid"):
                v = int(a[len("set_field:"):-len("->vlan_vid")], 0)
                assert v & 0x1000, "vlan_vid set without OFPVID_PRESENT"
                ctx.pkt = replace(p, vlans=(v & 0xFFF,) + p.vlans[1:])
            elif a == "pop_vlan":
                assert p.vlans, "pop_vlan on an untagged frame"
                ctx.pkt = replace(p, vlans=p.vlans[1:])
            elif a.startswith("set_field:") and a.endswith("->tun_id"):
                ctx.pkt = replace(p, tun_id=int(a[len("set_field:"):-len("->tun_id")], 16))
            elif a.startswith("set_field:") and "->reg" in a:
                val, _, reg = a[len("set_field:"):].partition("->")
                ctx.regs[reg] = int(val, 16)
            elif a.startswith("resubmit(,"):
                self._table(br, int(a[len("resubmit(,"):-1]), ctx, outs, depth + 1)
            elif a.startswith("output:") or a == "IN_PORT":
                port = ctx.in_port if a == "IN_PORT" else int(a[len("output:"):])
                if a != "IN_PORT" and port == ctx.in_port:
                    continue  # OpenFlow drops output to the input port
                peer = self.patches.get((br, port))
                if peer:
                    self._table(peer[0], 0, _Ctx(peer[1], replace(ctx.pkt, tun_id=0)), outs,
                                depth + 1)
                else:
                    outs.append(Out(br, port, ctx.pkt))
            elif a == "NORMAL":
                outs.append(Out("NORMAL", br, ctx.pkt))
            else:
                raise AssertionError(f"fake switch does not know action {a}")
