"""What a compile settles before any flow: each tap mirror direction's local VLAN (stable
across syncs) and the local ports whose network context can be trusted (never hooked
otherwise). Pure; used by ``compile.compile_host``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from taas.agent.ovs import tables as T
from taas.agent.ports import LocalPort
from taas.common.desired_state import DesiredState, TapMirrorState
from taas.common.vlans import VLAN_ID_MAX

__all__ = ["DEAD_PORT", "assign_mirror_vlans", "unwired_ports", "wired"]


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


def wired(p: LocalPort) -> bool:
    """A port in a tenant network here: access tag 1-4094 (None or 4095: Neutron's dead VLAN,
    an admin-down or unbound port, which shares that tag with every other such port)."""
    return p.local_vlan is not None and 1 <= p.local_vlan <= VLAN_ID_MAX


def unwired_ports(desired: DesiredState, ports: Mapping[str, LocalPort]) -> dict[str, str]:
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
