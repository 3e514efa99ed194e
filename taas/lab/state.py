"""The lab's names, paths and state file: the public contract of docs/development.md.

A lab is described entirely by its state file (JSON): what `up` built, where each host's OVS
listens, which ports the VMs have. The dataclasses here are read-only views of its records.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from taas.lab import spec as specmod
from taas.lab.sh import read_pidfile

LAB_ROOT = Path(os.environ.get("TAAS_LAB_ROOT", "/tmp"))
NETNS_PREFIX = "tlab-"
LAB_DIR_PREFIX = "taas-lab-"
L2_COOKIE = 0x1  # cookie of the flows the lab installs as "the L2 agent"; taas must use another
LAB_BRIDGES = ("br-int", "br-tun", "br-phy")
UNDERLAY_MTU = 9000  # room for VXLAN/GRE/ERSPAN around full-size 1500-byte VM frames
OVS_DAEMONS = ("ovsdb-server", "ovs-vswitchd")


def lab_dir(name: str) -> Path:
    return LAB_ROOT / f"{LAB_DIR_PREFIX}{name}"


def default_state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def netns_name(lab: str, obj: str) -> str:
    return f"{NETNS_PREFIX}{lab}-{obj}"


def vxlan_port_name(ip: str) -> str:
    return "vxlan-" + "".join(f"{int(o):02x}" for o in ip.split("."))


def read_state(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def write_state(state: dict[str, Any], path: Path) -> None:
    """Atomically (a reader never sees half a file); plus a pointer in the lab dir, so that
    `down` by name finds a state file kept elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)
    name = state["name"]
    ptr = lab_dir(name) / "state-file"
    if ptr.parent.exists() and path != default_state_file(name):
        ptr.write_text(str(path.resolve()))


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    tunnel_ip: str
    ovsdb: str  # "unix:<run_dir>/db.sock"
    run_dir: str
    local_vlans: dict[str, int] = field(default_factory=dict)  # network id -> local VLAN
    ofports: dict[str, dict[str, int]] = field(default_factory=dict)  # bridge -> port -> ofport
    vxlan_ports: dict[str, str] = field(default_factory=dict)  # remote tunnel IP -> port name
    underlay_interface: str = "phy0"
    fabric_interface: str = ""

    def mgmt(self, bridge: str) -> str:
        """The OpenFlow target of a bridge: `unix:<run_dir>/<bridge>.mgmt`."""
        return f"unix:{self.run_dir}/{bridge}.mgmt"

    def vswitchd_ctl(self) -> str:
        pid = read_pidfile(f"{self.run_dir}/ovs-vswitchd.pid")
        return f"{self.run_dir}/ovs-vswitchd.{pid}.ctl"


@dataclass(frozen=True)
class VM:
    name: str
    netns: str
    interface: str
    host: str
    network_id: str
    project_id: str
    port_id: str
    mac: str
    ip: str
    network: str = ""  # network name
    prefixlen: int = 24
    host_interface: str = ""  # the br-int port (tap...)
    local_vlan: int = 0
    ofport: int = 0  # on the host's br-int


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    project_id: str
    vni: int
    cidr: str = ""


@dataclass(frozen=True)
class Collector:
    name: str
    netns: str
    interface: str
    ip: str


V = TypeVar("V")


def view(cls: type[V], record: dict[str, Any]) -> V:
    """A view of a state record; fields the view does not know are ignored (extras)."""
    names = cls.__dataclass_fields__.keys()  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in record.items() if k in names})


def initial_state(plan: specmod.Plan, state_file: Path) -> dict[str, Any]:
    """The state of a resolved plan before anything is built (ofports come with the build)."""
    d = lab_dir(plan.name)
    nets = {n.name: n for n in plan.networks}
    return {
        "name": plan.name,
        "lab_dir": str(d),
        "state_file": str(state_file),
        "l2_cookie": L2_COOKIE,
        "underlay_cidr": plan.underlay_cidr,
        "fabric_netns": netns_name(plan.name, "fabric"),
        "fabric_bridge": "fab0",
        "created": time.time(),
        "hosts": [{
            "name": h.name, "netns": netns_name(plan.name, h.name), "tunnel_ip": h.tunnel_ip,
            "ovsdb": f"unix:{d}/{h.name}/db.sock", "run_dir": f"{d}/{h.name}",
            "underlay_interface": "phy0", "fabric_interface": f"h{h.index}",
            "local_vlans": {nets[n].id: t for n, t in h.local_vlans.items()},
            "ofports": {}, "vxlan_ports": {},
        } for h in plan.hosts],
        "networks": [{"id": n.id, "name": n.name, "project_id": n.project_id, "vni": n.vni,
                      "cidr": n.cidr} for n in plan.networks],
        "vms": [{
            "name": v.name, "netns": netns_name(plan.name, v.name), "interface": "eth0",
            "host": v.host, "network_id": v.network_id, "project_id": v.project_id,
            "port_id": v.port_id, "mac": v.mac, "ip": v.ip, "network": v.network,
            "prefixlen": v.prefixlen, "host_interface": "tap" + v.port_id[:11],
            "device_id": str(uuid.uuid5(specmod.LAB_UUID_NS, f"{plan.name}/vm/{v.name}")),
            "local_vlan": next(h.local_vlans[v.network] for h in plan.hosts if h.name == v.host),
            "ofport": 0,
        } for v in plan.vms],
        "collectors": [{"name": c.name, "netns": netns_name(plan.name, c.name),
                        "interface": "eth0", "ip": c.ip, "fabric_interface": f"c{c.index}"}
                       for c in plan.collectors],
        "agents": [],
    }
