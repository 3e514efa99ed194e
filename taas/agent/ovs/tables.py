"""Named constants of the taas OpenFlow pipeline (documented table by table in docs/pipeline.md)."""

from __future__ import annotations

# Every flow taas writes carries this cookie; taas dumps and deletes only by it, so the L2
# agent's flows on the shared bridges are never touched. Constant across restarts (defect 10).
COOKIE = 0x7AA5_0000_0000_0001
# The canary flow: an inert flow in an unused table; its absence means the switch lost our
# flows (ovs-vswitchd restarted, or someone wiped them).
CANARY_TABLE = 250

# Registers used on br-int (scratch, inside a clone so the L2 pipeline never sees them).
REG_NET = "reg12"  # the local VLAN of the frame's network (its network context)
REG_PORT = "reg13"  # IN_BCAST: the ofport of the source port whose ingress copies are made

# br-int
INT_CLASSIFY = 0  # hook: ports of tapped networks, delivery from br-tap
INT_OUT = 210  # egress mirroring: frames a source port sends, by in_port
INT_IN = 211  # ingress mirroring: frames delivered to a source port, by (network, dl_dst)
INT_IN_BCAST = 212  # ingress mirroring of broadcast/multicast, one source port at a time
# A broadcast visits every IN-mirrored port of its network (OVS caps resubmits per packet).
MAX_IN_PORTS_PER_NETWORK = 1000

# br-tap: one table
TAP_CLASSIFY = 0

# br-tun: taas flows live in Neutron's table 0 at a priority above its in_port classification
TUN_CLASSIFY = 0

# Priorities
PRIO_DELIVER = 320  # br-int: copy from br-tap for a local monitor port
PRIO_DROP_PATCH = 310  # drop anything else that comes out of a taas patch port
PRIO_HOOK = 300  # br-int table 0 hook of tapped ports / tunnels
PRIO_TAP = 300  # br-tap forwarding of copies
PRIO_TUN = 300  # br-tun: copies to/from VXLAN
PRIO_TUN_DROP = 290  # br-tun: anything else from patch-tun-tap
PRIO_COPY = 100  # br-int OUT/IN tables; +1 for vlan_filter pieces
PRIO_IN_EXCLUDE = 110  # IN_BCAST: broadcast from the source itself (not delivered to it)

# Names of the taas patch ports (ours; the br-int <-> br-tun patch is the L2 agent's, found
# through OVSDB by its peer).
PATCH_INT_TAP = "patch-int-tap"  # on br-int
PATCH_TAP_INT = "patch-tap-int"  # on br-tap
PATCH_TAP_TUN = "patch-tap-tun"  # on br-tap
PATCH_TUN_TAP = "patch-tun-tap"  # on br-tun
# patch-int-tap is an access port of this VLAN so that NORMAL never floods tenant frames to it.
DEAD_VLAN = 4095

# Local VLAN ids for tap-mirror copies inside a host (taas_ids use the server's range).
MIRROR_VLAN_FIRST = 4000
MIRROR_VLAN_LAST = 4094
