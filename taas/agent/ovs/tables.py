"""The taas OpenFlow pipeline, declared: every table taas writes, what it may match, where it
may go next (documented table by table in docs/pipeline.md).

``Flow.make`` checks each flow against its ``Table`` (match fields, priority, actions,
resubmit targets) and ``FlowSet`` files it under the table's bridge, so a flow the compiler
spells outside this declaration fails at once, under test and in production alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from taas.common.vlans import DEAD_VLAN, MIRROR_VLAN_FIRST, MIRROR_VLAN_LAST

__all__ = ["DEAD_VLAN", "MIRROR_VLAN_FIRST", "MIRROR_VLAN_LAST"]

# Every flow taas writes carries this cookie; taas dumps and deletes only by it, so the L2
# agent's flows on the shared bridges are never touched. Constant across restarts and versions.
COOKIE = 0x7AA5_0000_0000_0001

# The bridges, as the compiler names them.
BR_INT, BR_TAP, BR_TUN = "int", "tap", "tun"
BRIDGES = (BR_INT, BR_TAP, BR_TUN)

# Registers used on br-int (scratch, inside a clone so the L2 pipeline never sees them).
REG_NET = "reg12"  # the local VLAN of the frame's network (its network context)
REG_PORT = "reg13"  # IN_BCAST: the ofport of the source port whose ingress copies are made
REG_FILTER = "reg14"  # FILTER: which (filtered tap flow, direction) a copy belongs to
# pkt_mark of a copy (set on br-int inside its clone; unlike registers it survives patch
# ports): bits 16-31 = the key of its tap flow's meters on br-tap, bits 0-15 = its snaplen
# (0: the whole frame), read by the exit that truncates it. Zero again before any tunnel
# output (OVS's tunnel routing looks routes up by pkt_mark).
MARK_KEY_SHIFT = 16
MARK_SNAPLEN_MASK = 0xFFFF
MARK_KEY_MASK = 0xFFFF_0000
MAX_MARK_KEY = 0xFFFF
MIN_SNAPLEN = 64
# max_len of an output counts the taas VLAN that the same flow pops just before it (measured
# on OVS 3.1: pop_vlan,output(port=P,max_len=100) delivers 96 bytes)
POPPED_TAG = 4

# A broadcast visits every IN-mirrored port of its network (OVS caps resubmits per packet).
MAX_IN_PORTS_PER_NETWORK = 1000

# Priorities
PRIO_DELIVER = 320  # br-int: copy from br-tap for a local monitor port
PRIO_DELIVER_TRUNC = 321  # br-int: the same for copies of one snaplen (pkt_mark low bits)
PRIO_DROP_PATCH = 310  # drop anything else that comes out of a taas patch port
PRIO_HOOK = 300  # br-int table 0 hook of tapped ports / tunnels
PRIO_TAP = 300  # br-tap forwarding of copies
PRIO_TAP_LIMIT = 310  # br-tap: copies of a rate-limited tap flow (pkt_mark key): its meters
PRIO_TUN = 300  # br-tun: copies from br-tap to VXLAN (in_port=patch-tun-tap, dl_vlan=T)
# br-tun: copies from VXLAN by tun_id. Its own priority: a tun_id match does not exclude
# patch-tun-tap (whose frames have tun_id 0), so at PRIO_TUN the two would overlap.
PRIO_TUN_IN = 310
PRIO_TUN_DROP = 290  # br-tun: anything else from patch-tun-tap
PRIO_TUN_TRUNC = 301  # br-tun: copies of one snaplen to VXLAN (truncated before encapsulation)
PRIO_COPY = 100  # br-int OUT/IN tables; +1 for vlan_filter pieces
PRIO_IN_EXCLUDE = 110  # IN_BCAST: broadcast from the source itself (not delivered to it)
PRIO_FILTER_DEFAULT = 100  # FILTER: the filter's default_action
PRIO_FILTER_RULE = 2001  # FILTER: a rule of priority p (1-1000) sits at PRIO_FILTER_RULE - p
MAX_FILTER_RULE_PRIORITY = 1000

# The actions the compiler speaks (``Flow.make`` refuses any other).
COPY_ACTIONS = frozenset({"clone", "push_vlan", "set_field", "output", "drop"})
VLAN_MATCHES = frozenset({"dl_vlan", "vlan_tci"})  # an exact VLAN id, or a vlan_filter prefix
# A meter is only ever written at the start of the first flow a copy meets after crossing a
# patch port (or in the flow that flow resubmits to): OVS translates that flow as a datapath
# clone when it holds a meter, so the meter drops only the copy. In a br-int OUT/IN flow the
# copy's clone() is inlined and a meter there would drop the tenant's frame too.
LIMIT_ACTIONS = frozenset({"meter", "pop_vlan", "set_field", "output", "IN_PORT"})


@dataclass(frozen=True)
class Table:
    """One OpenFlow table taas writes on one bridge."""

    bridge: str  # BR_INT / BR_TAP / BR_TUN
    number: int
    name: str
    matches: frozenset[str]  # match fields a flow here may use
    priorities: frozenset[int]
    actions: frozenset[str]  # action names a flow here may use (at any depth)
    goto: frozenset[int] = frozenset()  # tables a flow here may resubmit to
    continues: bool = False  # flows here may end with the L2 agent's continuation

    def __str__(self) -> str:
        return f"{self.name} (br-{self.bridge} table {self.number})"


# The tap filters' match fields (dl_type+nw_proto as OVS's shorthands, taas/agent/ovs/filters.py).
FILTER_MATCHES = frozenset({"ip", "ipv6", "tcp", "udp", "icmp", "sctp", "tcp6", "udp6", "icmp6",
                            "sctp6", "nw_proto", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst",
                            "tp_src", "tp_dst"})
# br-int (shared with the L2 agent)
INT_FILTER = Table(BR_INT, 213, "FILTER", frozenset({REG_FILTER}) | FILTER_MATCHES,
                   frozenset({PRIO_FILTER_DEFAULT})
                   | frozenset(range(PRIO_FILTER_RULE - MAX_FILTER_RULE_PRIORITY,
                                     PRIO_FILTER_RULE)),
                   frozenset({"push_vlan", "set_field", "output", "drop"}))
_TO_FILTER = frozenset({INT_FILTER.number})
INT_OUT = Table(BR_INT, 210, "OUT", frozenset({"in_port"}) | VLAN_MATCHES,
                frozenset({PRIO_COPY, PRIO_COPY + 1}), COPY_ACTIONS | {"resubmit"},
                goto=_TO_FILTER)
INT_IN_BCAST = Table(BR_INT, 212, "IN_BCAST", frozenset({REG_PORT, "in_port"}) | VLAN_MATCHES,
                     frozenset({PRIO_COPY, PRIO_COPY + 1, PRIO_IN_EXCLUDE}),
                     COPY_ACTIONS | {"resubmit"}, goto=_TO_FILTER)
INT_IN = Table(BR_INT, 211, "IN", frozenset({REG_NET, "dl_dst"}) | VLAN_MATCHES,
               frozenset({PRIO_COPY, PRIO_COPY + 1}), COPY_ACTIONS | {"resubmit"},
               goto=frozenset({INT_IN_BCAST.number}) | _TO_FILTER)
_DELIVER_PRIOS = frozenset({PRIO_DELIVER, PRIO_DELIVER_TRUNC})
# br-int: the second meter of a tap service with both max_pps and max_kbps
INT_DELIVER_LIMIT = Table(BR_INT, 215, "DELIVER_LIMIT",
                          frozenset({"in_port", "dl_vlan", "pkt_mark"}), _DELIVER_PRIOS,
                          frozenset({"meter", "pop_vlan", "output"}))
INT_CLASSIFY = Table(BR_INT, 0, "CLASSIFY", frozenset({"in_port", "dl_vlan", "pkt_mark"}),
                     _DELIVER_PRIOS | {PRIO_DROP_PATCH, PRIO_HOOK},
                     frozenset({"clone", "set_field", "resubmit", "pop_vlan", "output", "drop",
                                "meter"}),
                     goto=frozenset({INT_OUT.number, INT_IN.number, INT_DELIVER_LIMIT.number}),
                     continues=True)
# br-tap (taas only): table 0, and table 1 for the second meter of a resource with two
_TAP_PRIOS = frozenset({PRIO_TAP, PRIO_TAP_LIMIT})
TAP_LIMIT = Table(BR_TAP, 1, "TAP_LIMIT", frozenset({"in_port", "dl_vlan", "pkt_mark"}),
                  _TAP_PRIOS, LIMIT_ACTIONS)
TAP_CLASSIFY = Table(BR_TAP, 0, "TAP", frozenset({"in_port", "dl_vlan", "pkt_mark"}),
                     _TAP_PRIOS | {0}, LIMIT_ACTIONS | {"drop", "resubmit"},
                     goto=frozenset({TAP_LIMIT.number}))
# br-tun: taas flows live in Neutron's table 0 at priorities above its in_port classification
TUN_CLASSIFY = Table(BR_TUN, 0, "TUN", frozenset({"in_port", "dl_vlan", "tun_id", "pkt_mark"}),
                     frozenset({PRIO_TUN, PRIO_TUN_TRUNC, PRIO_TUN_IN, PRIO_TUN_DROP}),
                     frozenset({"push_vlan", "set_field", "pop_vlan", "output", "drop"}))
# The canary: an inert flow in a table nothing resubmits to; its absence means the switch lost
# our flows (ovs-vswitchd restarted, or someone wiped them).
CANARY_TABLE = 250
CANARY = {br: Table(br, CANARY_TABLE, "CANARY", frozenset(), frozenset({0}), frozenset({"drop"}))
          for br in BRIDGES}

# The spelling probe: the compiler's vocabulary, written to br-tap in this table (which nothing
# resubmits to: inert) at start-up and read back (OvsDriver.probe_spelling).
PROBE_TABLE = 251

TABLES: tuple[Table, ...] = (INT_CLASSIFY, INT_OUT, INT_IN, INT_IN_BCAST, INT_FILTER,
                             INT_DELIVER_LIMIT, TAP_CLASSIFY, TAP_LIMIT,
                             TUN_CLASSIFY, *CANARY.values())

# Names of the taas patch ports (ours; the br-int <-> br-tun patch is the L2 agent's, found
# through OVSDB by its peer).
PATCH_INT_TAP = "patch-int-tap"  # on br-int
PATCH_TAP_INT = "patch-tap-int"  # on br-tap
PATCH_TAP_TUN = "patch-tap-tun"  # on br-tap
PATCH_TUN_TAP = "patch-tun-tap"  # on br-tun
# patch-int-tap is an access port of DEAD_VLAN so that NORMAL never floods tenant frames to it.
