"""Helpers of the data-plane tests: drive one OvsDriver per lab host with hand-built states."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from taas.agent.ovs.driver import LocalPort, OvsDriver, SyncResult
from taas.common import placement
from taas.common.desired_state import (
    DesiredState,
    PortFacts,
    TapFilterState,
    TapFlowState,
    TapMirrorState,
    TapServiceState,
)
from taas.lab import Lab

VNI_BASE = 16_000_000


def local_ports(lab: Lab, host: str) -> dict[str, LocalPort]:
    return {v.port_id: LocalPort(v.port_id, v.ofport, v.local_vlan, v.mac, v.host_interface)
            for v in lab.vms_on(host)}


@dataclass
class Taas:
    """Tap services/flows/mirrors by VM name, compiled into each host's desired state."""

    lab: Lab
    services: dict[str, TapServiceState] = field(default_factory=dict)
    flows: dict[str, TapFlowState] = field(default_factory=dict)
    mirrors: dict[str, TapMirrorState] = field(default_factory=dict)
    drivers: dict[str, OvsDriver] = field(default_factory=dict)
    revision: int = 0

    def __post_init__(self) -> None:
        for h in self.lab.hosts:
            d = OvsDriver(h.ovsdb, h.run_dir, h.name, h.tunnel_ip)
            d.setup()
            self.drivers[h.name] = d

    def service(self, name: str, monitor_vm: str, taas_id: int, **limits: int) -> None:
        vm = self.lab.vm(monitor_vm)
        host = self.lab.host(vm.host)
        self.services[name] = TapServiceState(name, vm.project_id, vm.port_id, taas_id,
                                              VNI_BASE + taas_id, host.name, host.tunnel_ip,
                                              **limits)

    def flow(self, name: str, service: str, source_vm: str, direction: str,
             vlan_filter: str | None = None, tap_filter: TapFilterState | None = None,
             **limits: int) -> None:
        """``limits``: snaplen, max_pps, max_kbps."""
        vm = self.lab.vm(source_vm)
        self.flows[name] = TapFlowState(name, vm.project_id, service, vm.port_id,
                                        direction, vlan_filter, tap_filter,  # type: ignore[arg-type]
                                        **limits)

    def mirror(self, name: str, vm_name: str, directions: dict[str, int], remote_ip: str,
               mirror_type: str, **limits: int) -> None:
        vm = self.lab.vm(vm_name)
        self.mirrors[name] = TapMirrorState(name, vm.project_id, vm.port_id, directions,
                                            remote_ip, mirror_type,  # type: ignore[arg-type]
                                            **limits)

    def state(self, host: str) -> DesiredState:
        vms = {v.port_id: v for v in self.lab.vms}
        # The server's own rule of which resources a host's state holds.
        services, flows, mirrors = placement.host_share(
            host, self.services.values(), self.flows.values(), self.mirrors.values(),
            lambda pid: vms[pid].host if pid in vms else None)
        nets = {n.id: n.vni for n in self.lab.networks}
        return DesiredState(
            host, self.revision, tuple(services), tuple(flows), tuple(mirrors),
            {pid: PortFacts(pid, v.network_id, v.mac, nets[v.network_id], v.host)
             for pid, v in vms.items()})

    def sync(self) -> dict[str, SyncResult]:
        self.revision += 1
        return {h: d.sync(self.state(h), local_ports(self.lab, h))
                for h, d in self.drivers.items()}

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()


# --- traffic -----------------------------------------------------------------------------------

BCAST = "ff:ff:ff:ff:ff:ff"
MCAST = "01:00:5e:7f:00:01"


def frame(lab: Lab, src: str, dst: str, marker: str, tag: int | None = None) -> bytes:
    """A UDP frame from VM ``src`` to VM ``dst`` (or BCAST/MCAST), with a unique payload."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    s = lab.vm(src)
    if dst in (BCAST, MCAST):
        mac, ip = dst, "255.255.255.255" if dst == BCAST else "239.127.0.1"
    else:
        mac, ip = lab.vm(dst).mac, lab.vm(dst).ip
    p = Ether(src=s.mac, dst=mac)
    if tag is not None:
        p = p / Dot1Q(vlan=tag)
    return bytes(p / IP(src=s.ip, dst=ip, ttl=9) / UDP(sport=4789 + 1, dport=9999)
                 / Raw(f"TAAS-DP {marker}".encode().ljust(64, b".")))


def prime(lab: Lab) -> None:
    """Let every switch learn every VM's MAC, so unicast is not flooded (stable baselines)."""
    for net in lab.networks:
        vms = lab.vms_in(net.name)
        for a, b in zip(vms, vms[1:] + vms[:1], strict=True):
            if a.name != b.name:
                lab.ping(a.name, b.name, count=1)


def observe(lab: Lab, sends: list[tuple[str, bytes]], at: list[str] | None = None
            ) -> dict[str, Counter[bytes]]:
    """Send frames from VMs; return the test frames each VM received (exact bytes, counted)."""
    at = at or [v.name for v in lab.vms]
    with lab.captures(at, direction="in") as caps:
        by_vm: dict[str, list[bytes]] = {}
        for vm, f in sends:
            by_vm.setdefault(vm, []).append(f)
        for vm, frames in by_vm.items():
            lab.send_frames(vm, frames)
    return {vm: Counter(f for f in c.frames if b"TAAS-DP" in f) for vm, c in caps.items()}


def gre_payloads(frames: list[bytes]) -> list[tuple[int, int | None, bytes]]:
    """(GRE protocol, key, payload) of the IPv4 GRE packets among Ethernet frames."""
    out = []
    for f in frames:
        if len(f) < 38 or f[12:14] != b"\x08\x00" or f[23] != 47:
            continue
        ip = f[14:]
        gre = ip[(ip[0] & 0xF) * 4:]
        flags, proto = struct.unpack("!HH", gre[:4])
        off, key = 4, None
        if flags & 0x8000:
            off += 4
        if flags & 0x2000:
            key = struct.unpack("!I", gre[off:off + 4])[0]
            off += 4
        if flags & 0x1000:
            off += 4
        out.append((proto, key, gre[off:]))
    return out
