"""Lab specs: load a small YAML/JSON description and resolve it into a complete, deterministic plan.

Everything the spec leaves out (ids, MACs, IPs, VNIs, local VLANs, underlay addresses) is
derived from the lab name and the object names, so the same spec and name always give the same
lab. The resolved plan is what `taas.lab.builder` builds and what the state file records.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SPEC = Path(__file__).with_name("default.yaml")
# uuid5 namespace of every lab id; fixed so ids are stable across runs and machines.
LAB_UUID_NS = uuid.UUID("5b0b6c1e-7a5e-4c59-9d2f-3a7ab0c0ffee")
# The taas tunnel keys (server default tunnel_key_base 16_000_000 + taas ids); never a tenant VNI.
TAAS_VNI_RANGE = range(16_003_900, 16_004_000)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,11}$")
OBJ_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")


class SpecError(ValueError):
    """The spec is malformed or inconsistent."""


@dataclass
class NetPlan:
    id: str
    name: str
    project_id: str
    vni: int
    cidr: str


@dataclass
class VMPlan:
    name: str
    host: str
    network: str  # network name
    network_id: str
    project_id: str
    port_id: str
    mac: str
    ip: str  # without prefix length
    prefixlen: int


@dataclass
class HostPlan:
    name: str
    index: int  # 1-based
    tunnel_ip: str
    local_vlans: dict[str, int] = field(default_factory=dict)  # network name -> local VLAN


@dataclass
class CollectorPlan:
    name: str
    index: int
    ip: str


@dataclass
class Plan:
    name: str
    underlay_cidr: str
    hosts: list[HostPlan]
    networks: list[NetPlan]
    vms: list[VMPlan]
    collectors: list[CollectorPlan]


def _h(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def check_name(name: str) -> str:
    """Lab names are short and have no '-', so that `tlab-<name>-` never prefixes another lab."""
    if not NAME_RE.match(name):
        raise SpecError(f"lab name {name!r} must match {NAME_RE.pattern}")
    return name


def load_spec(spec: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    """A spec from a dict, a YAML/JSON file, or the shipped default (None)."""
    if isinstance(spec, dict):
        return json.loads(json.dumps(spec))  # deep copy, JSON-clean
    path = Path(spec) if spec is not None else DEFAULT_SPEC
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a mapping")
    return data


def spread(spec: dict[str, Any], n_hosts: int) -> dict[str, Any]:
    """The same kind of layout over `n_hosts` hosts (`--hosts N`).

    The first VM of the first network (the monitor) stays on host1; every other VM is placed
    round-robin; networks with fewer VMs than hosts get extra VMs so that every network has a
    VM on every host.
    """
    if n_hosts < 1:
        raise SpecError("--hosts must be >= 1")
    spec = load_spec(spec)
    hosts = [f"host{i}" for i in range(1, n_hosts + 1)]
    if spec.get("hosts") == hosts:
        return spec
    vms: list[dict[str, Any]] = spec.get("vms", [])
    nets = [n["name"] for n in spec.get("networks", [])]
    used = {v["name"] for v in vms}
    counter = 1 + max((int(m.group(1)) for v in vms if (m := re.match(r"vm(\d+)$", v["name"]))),
                      default=0)
    out: list[dict[str, Any]] = []
    for ni, net in enumerate(nets):
        members = [dict(v) for v in vms if v["network"] == net]
        pinned = members[:1] if ni == 0 and members else []
        rest = members[len(pinned):]
        while len(rest) < n_hosts:
            while f"vm{counter}" in used:
                counter += 1
            used.add(f"vm{counter}")
            rest.append({"name": f"vm{counter}", "network": net})
        for v in pinned:
            v["host"] = hosts[0]
        for i, v in enumerate(rest):
            v["host"] = hosts[i % n_hosts]
        out += pinned + rest
    spec["hosts"] = hosts
    spec["vms"] = out
    return spec


def underlay_cidr(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A /24 in 172.16.0.0/12 derived from the lab name, skipping subnets of running labs.

    Each lab's underlay lives only in its own namespaces, so a clash would be harmless; distinct
    subnets just keep captures and logs of two labs unambiguous."""
    d = _h("underlay", name)
    k = (d[0] << 8 | d[1]) % 4096
    for i in range(4096):
        j = (k + i) % 4096
        cidr = f"172.{16 + j // 256}.{j % 256}.0/24"
        if cidr not in taken:
            return cidr
    raise SpecError("no free underlay subnet")


def _mac(name: str, vm: str, salt: int = 0) -> str:
    d = _h("mac", name, vm, str(salt))
    return f"fa:16:3e:{d[0]:02x}:{d[1]:02x}:{d[2]:02x}"


def resolve(spec: dict[str, Any], name: str,
            taken_underlays: set[str] | frozenset[str] = frozenset()) -> Plan:
    """Validate a spec and fill in every derived value."""
    check_name(name)
    host_names = spec.get("hosts") or []
    if not host_names:
        raise SpecError("spec needs at least one host")
    seen: set[str] = set()

    def claim(obj: str, kind: str) -> None:
        if not isinstance(obj, str) or not OBJ_RE.match(obj) or obj == "fabric":
            raise SpecError(f"bad {kind} name {obj!r}")
        if obj in seen:
            raise SpecError(f"name {obj!r} used twice (hosts, VMs and collectors share names)")
        seen.add(obj)

    net = ipaddress.ip_network(spec.get("underlay") or underlay_cidr(name, taken_underlays))
    if net.prefixlen > 24:
        raise SpecError("the underlay needs at least a /24")
    hosts = []
    for i, h in enumerate(host_names, 1):
        claim(h, "host")
        if i > 190:
            raise SpecError("at most 190 hosts")
        hosts.append(HostPlan(name=h, index=i, tunnel_ip=str(net[i])))

    networks: list[NetPlan] = []
    vnis: set[int] = set()
    for i, n in enumerate(spec.get("networks") or []):
        nname = n["name"]
        if any(x.name == nname for x in networks):
            raise SpecError(f"network {nname!r} twice")
        vni = int(n.get("vni", 100 + i))
        if vni in TAAS_VNI_RANGE or not 1 <= vni < 2**24 or vni in vnis:
            raise SpecError(f"network {nname}: bad or duplicate VNI {vni} (taas range reserved)")
        vnis.add(vni)
        cidr = str(ipaddress.ip_network(n.get("cidr", f"10.10.{i + 1}.0/24")))
        networks.append(NetPlan(
            id=n.get("id") or str(uuid.uuid5(LAB_UUID_NS, f"{name}/net/{nname}")),
            name=nname, project_id=n.get("project_id", "project-a"), vni=vni, cidr=cidr))
    by_net = {n.name: n for n in networks}

    vms: list[VMPlan] = []
    next_ip: dict[str, int] = {n.name: 2 for n in networks}  # .1 is left for a gateway
    macs: dict[str, set[str]] = {n.name: set() for n in networks}
    ips: dict[str, set[str]] = {n.name: set() for n in networks}
    explicit_ips = {(v.get("network"), v.get("ip")) for v in spec.get("vms") or [] if v.get("ip")}
    for v in spec.get("vms") or []:
        claim(v["name"], "VM")
        n = by_net.get(v.get("network"))
        if n is None:
            raise SpecError(f"VM {v['name']}: unknown network {v.get('network')!r}")
        if v.get("host", host_names[0]) not in host_names:
            raise SpecError(f"VM {v['name']}: unknown host {v.get('host')!r}")
        cidr = ipaddress.ip_network(n.cidr)
        if v.get("ip"):
            ip = str(ipaddress.ip_interface(v["ip"]).ip)
        else:
            while True:
                ip = str(cidr[next_ip[n.name]])
                next_ip[n.name] += 1
                if (n.name, ip) not in explicit_ips:
                    break
        if ip in ips[n.name]:
            raise SpecError(f"VM {v['name']}: IP {ip} used twice in {n.name}")
        ips[n.name].add(ip)
        if v.get("mac"):
            mac = str(v["mac"]).lower()
        else:
            salt = 0
            while (mac := _mac(name, v["name"], salt)) in macs[n.name]:
                salt += 1
        # A MAC is unique inside a network only; two networks may reuse one (tests need it).
        if mac in macs[n.name]:
            raise SpecError(f"VM {v['name']}: MAC {mac} used twice in {n.name}")
        macs[n.name].add(mac)
        vms.append(VMPlan(
            name=v["name"], host=v.get("host", host_names[0]), network=n.name, network_id=n.id,
            project_id=n.project_id,
            port_id=v.get("port_id") or str(uuid.uuid5(LAB_UUID_NS, f"{name}/port/{v['name']}")),
            mac=mac, ip=ip, prefixlen=cidr.prefixlen))

    # Local VLANs: per host, 1, 2, ... in network order, only where the network has a VM.
    for h in hosts:
        tag = 1
        for n in networks:
            if any(vm.host == h.name and vm.network == n.name for vm in vms):
                h.local_vlans[n.name] = tag
                tag += 1

    collectors = []
    for i, c in enumerate(spec.get("collectors") or [], 1):
        cname = c["name"] if isinstance(c, dict) else str(c)
        claim(cname, "collector")
        collectors.append(CollectorPlan(name=cname, index=i, ip=str(net[200 + i])))
    if len(collectors) > 50:
        raise SpecError("at most 50 collectors")
    return Plan(name=name, underlay_cidr=str(net), hosts=hosts, networks=networks, vms=vms,
                collectors=collectors)
