"""`Lab.status()`: a human-readable summary of a lab (`taas lab status`)."""

from __future__ import annotations

from taas.lab.handle import LabHandle
from taas.lab.sh import LabCommandError, cmdline, read_pidfile
from taas.lab.state import OVS_DAEMONS


def daemon_up(run_dir: str, daemon: str) -> bool:
    """The daemon's pidfile names a live process of this run dir (not a recycled pid)."""
    pid = read_pidfile(f"{run_dir}/{daemon}.pid")
    return bool(pid and run_dir in cmdline(pid))


class StatusMixin(LabHandle):
    def status(self) -> str:
        lines = [f"lab {self.name}  (state {self.state_file}, underlay "
                 f"{self.state['underlay_cidr']}, fabric netns {self.state['fabric_netns']})"]
        for h in self.hosts:
            daemons = " ".join(f"{d}={'up' if daemon_up(h.run_dir, d) else 'DOWN'}"
                               for d in OVS_DAEMONS)
            lines.append(f"host {h.name}: netns {h.netns} tunnel_ip {h.tunnel_ip} "
                         f"ovsdb {h.ovsdb} daemons {daemons}")
            try:
                br = self.ovs(h.name, ["ovs-vsctl", "list-br"]).split()
            except LabCommandError:
                br = ["?"]
            lines.append(f"  bridges: {' '.join(br)}")
            for b, ports in h.ofports.items():
                by_ofport = sorted(ports.items(), key=lambda x: x[1])
                lines.append(f"  {b}: " + " ".join(f"{p}={n}" for p, n in by_ofport))
        nets = {n.id: n for n in self.networks}
        for n in self.networks:
            lines.append(f"network {n.name}: id {n.id} project {n.project_id} vni {n.vni} "
                         f"cidr {n.cidr}")
        for v in self.vms:
            lines.append(f"vm {v.name}: host {v.host} net {nets[v.network_id].name} ip {v.ip} "
                         f"mac {v.mac} port {v.port_id} ({v.host_interface} ofport {v.ofport} "
                         f"vlan {v.local_vlan})")
        for c in self.collectors:
            lines.append(f"collector {c.name}: netns {c.netns} ip {c.ip}")
        for a in self.state.get("agents", []):
            lines.append(f"agent {a['host']}: pid {a['pid']} log {a['log']}")
        return "\n".join(lines)
