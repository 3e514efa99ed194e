"""`taas lab up --neutron`: the ordinary lab (hosts, underlay, VM namespaces) with a real
cloud's control plane (Keystone, neutron-server, RabbitMQ) and neutron-openvswitch-agents taking
br-int/br-tun over, VMs plugged as Neutron ports the way os-vif does, taas-server in Neutron mode
behind Keystone and one taas-agent per host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from taas.lab import Lab
from taas.lab.keystone import REGION, Keystone, User
from taas.lab.neutron.control import (
    KEYSTONE_PORT,
    ControlPlane,
    NeutronLabError,
    _run,
    _wait,
    check_installed,
)

# taas-agent beside neutron-openvswitch-agent (noop firewall): copies are made in the table the
# agent's pipeline reaches only with frames that passed its anti-spoofing tables (table 0 ->
# 24/25 -> 60), then the frame goes on with the action of that table's own flow (NORMAL).
TAAS_AGENT_ARGS = ("--hook-table", "60", "--continuation", "NORMAL")


def _ovs(h: dict[str, Any], *args: str) -> str:
    return _run(["ovs-vsctl", f"--db={h['ovsdb']}", *args])


def _take_over_switches(h: dict[str, Any]) -> None:
    """Drop the lab's stand-in L2 flows and unplug its VM ports: the real agent owns br-int and
    br-tun (it keeps the bridges, patch ports and VXLAN ports, whose names are Neutron's)."""
    rd = h["run_dir"]
    for br in ("br-int", "br-tun"):
        _run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", f"unix:{rd}/{br}.mgmt"])
    taps = [p for p in _ovs(h, "list-ports", "br-int").split() if p.startswith("tap")]
    args: list[str] = []
    for t in taps:
        args += ["--", "del-port", "br-int", t]
    if args:
        _ovs(h, *args)


class _Neutron:
    """A small client of neutron-server as the cloud admin (bodies name the project)."""

    def __init__(self, url: str, token: str) -> None:
        self.c = httpx.Client(base_url=url, headers={"X-Auth-Token": token}, timeout=60)

    def close(self) -> None:
        self.c.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.c.request(method, path, json=body)
        if r.status_code >= 400:
            raise NeutronLabError(f"neutron {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None


def _plug(h: dict[str, Any], v: dict[str, Any], port: dict[str, Any]) -> None:
    """os-vif style: the host end of the VM's veth becomes tap<port id[:11]> on br-int with
    the iface-id/attached-mac/iface-status/vm-uuid external_ids; the agent tags and wires it."""
    new = "tap" + port["id"][:11]
    old = v["host_interface"]
    if old != new:
        _run(["ip", "-n", h["netns"], "link", "set", old, "down"])
        _run(["ip", "-n", h["netns"], "link", "set", old, "name", new])
        _run(["ip", "-n", h["netns"], "link", "set", new, "up"])
    _ovs(h, "--", "--may-exist", "add-port", "br-int", new, "--", "set", "Interface", new,
         f"external_ids:iface-id={port['id']}", f"external_ids:attached-mac={v['mac']}",
         "external_ids:iface-status=active", f"external_ids:vm-uuid={v['device_id']}")
    v["host_interface"] = new


def _create_ports(lab: Lab, api: _Neutron) -> dict[str, dict[str, Any]]:
    s = lab.state
    nets: dict[str, dict[str, Any]] = {}
    for n in s["networks"]:
        net = api.call("POST", "/v2.0/networks", {"network": {
            "name": n["name"], "project_id": n["project_id"],
            "provider:network_type": "vxlan", "provider:segmentation_id": n["vni"]}})["network"]
        sub = api.call("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "project_id": n["project_id"], "name": n["name"] + "-sub",
            "cidr": n["cidr"], "ip_version": 4, "enable_dhcp": False,
            "gateway_ip": None}})["subnet"]
        nets[n["name"]] = {"id": net["id"], "subnet": sub["id"]}
        n["id"] = net["id"]

    def create(v: dict[str, Any]) -> dict[str, Any]:
        net = nets[v["network"]]
        return api.call("POST", "/v2.0/ports", {"port": {
            "name": v["name"], "network_id": net["id"], "project_id": v["project_id"],
            "mac_address": v["mac"], "fixed_ips": [{"subnet_id": net["subnet"],
                                                    "ip_address": v["ip"]}],
            "device_owner": "compute:nova", "device_id": v["device_id"],
            "binding:host_id": v["host"]}})["port"]

    with ThreadPoolExecutor(max_workers=4) as ex:
        ports = dict(zip([v["name"] for v in s["vms"]], ex.map(create, s["vms"]), strict=True))
    hosts = {h["name"]: h for h in s["hosts"]}
    for v in s["vms"]:
        p = ports[v["name"]]
        v["port_id"], v["network_id"] = p["id"], nets[v["network"]]["id"]
        _plug(hosts[v["host"]], v, p)
    return ports


def _refresh_ports(lab: Lab) -> None:
    """ofports and local VLANs as the neutron agent set them."""
    for h in lab.state["hosts"]:
        h["local_vlans"] = {}
        h["ofports"]["br-int"] = {
            k: v for k, v in h["ofports"].get("br-int", {}).items() if not k.startswith("tap")}
    hosts = {h["name"]: h for h in lab.state["hosts"]}
    for v in lab.state["vms"]:
        h = hosts[v["host"]]
        t = v["host_interface"]
        v["ofport"] = int(_ovs(h, "get", "Interface", t, "ofport").strip())
        tag = _ovs(h, "get", "Port", t, "tag").strip()
        v["local_vlan"] = int(tag) if tag.isdigit() else 0
        h["ofports"]["br-int"][t] = v["ofport"]
        h["local_vlans"][v["network_id"]] = v["local_vlan"]


def wait_ports_active(api_url: str, port_ids: Sequence[str], timeout: float = 120,
                      token: str = "") -> None:
    with httpx.Client(base_url=api_url, headers={"X-Auth-Token": token}, timeout=10) as c:
        def active() -> bool:
            r = c.get("/v2.0/ports", params={"fields": ["id", "status"]})
            st = {p["id"]: p["status"] for p in r.json()["ports"]}
            return all(st.get(p) == "ACTIVE" for p in port_ids)

        _wait("Neutron ports ACTIVE", active, timeout, interval=0.3)


def _wait_taas(lab: Lab, timeout: float = 60) -> None:
    """taas-server knows every VM port (from Neutron) and every host's agent reported."""
    srv = lab.state["server"]
    with httpx.Client(base_url=srv["url"], headers={"X-Auth-Token": srv["token"]},
                      timeout=10) as c:
        want = {v["port_id"]: v["host"] for v in lab.state["vms"]}

        def ready() -> bool:
            try:
                ports = c.get("/v2.0/ports").json()["ports"]
                agents = [a for a in c.get("/v2.0/agents").json()["agents"] if a["alive"]]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            have = {p["id"]: p.get("binding:host_id") for p in ports}
            return all(have.get(k) == h for k, h in want.items()) and \
                len(agents) >= len(lab.state["hosts"])

        _wait("taas-server ports and agents", ready, timeout, interval=0.3)


def up(spec: str | Path | dict[str, Any] | None = None, name: str = "lab", *,
       hosts: int | None = None, state_file: str | Path | None = None, agents: bool = True,
       agent_args: Sequence[str] = (), autoclean: bool = False,
       log: Callable[[str], None] | None = None) -> Lab:
    """Build a Neutron lab (see the module docstring); `agents=False`: no taas-agents."""
    check_installed()
    say = log or (lambda _m: None)
    t0 = time.monotonic()
    lab = Lab.up(spec, name, hosts=hosts, state_file=state_file, agents=False,
                 autoclean=autoclean, log=log)
    try:
        _build(lab, agents, agent_args, say)
    except BaseException:
        lab.down()
        raise
    lab.state["neutron"]["timings"]["total"] = round(time.monotonic() - t0, 1)
    lab.save()
    say(f"neutron lab {name} up in {time.monotonic() - t0:.1f}s")
    return lab


def _build(lab: Lab, agents: bool, agent_args: Sequence[str], say: Callable[[str], None]) -> None:
    s = lab.state
    cp = ControlPlane(lab.name, s["lab_dir"], s["hosts"], say)
    cp.create_namespace()
    cp.start_relay()
    s["neutron"] = {"url": cp.neutron_url, "token": "", "netns": cp.ns,
                    "transport_url": cp.transport_url, "timings": cp.timings}
    lab.save()
    cp.start_rabbit()
    with ThreadPoolExecutor(max_workers=len(s["hosts"])) as ex:
        list(ex.map(_take_over_switches, s["hosts"]))
    conf = cp.write_neutron_config(cp.start_postgres())
    projects = sorted({n["project_id"] for n in s["networks"]})
    with ThreadPoolExecutor(max_workers=1) as ex:  # Keystone's db_sync beside Neutron's
        keystone = ex.submit(cp.start_keystone, projects)
        cp.migrate(conf)
        ks = keystone.result()
    _record_keystone(lab, ks)
    cp.wait_rabbit()
    cp.start_neutron_server([*conf, *cp.write_authtoken_config()])
    t = time.monotonic()
    s["neutron"]["agents"] = [{"host": h["name"], "pid": cp.start_agent(h)} for h in s["hosts"]]
    cp.start_taas_server()
    s["server"] = {"url": cp.taas_url, "token": cp.admin_token, "pid": cp.taas_server_pid,
                   "networks": [], "ports": []}
    lab.save()
    cp.wait_agents([h["name"] for h in s["hosts"]])
    cp.timings["neutron_agents"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    api = _Neutron(cp.neutron_url, cp.admin_token)
    try:
        _create_ports(lab, api)
    finally:
        api.close()
    lab.save()
    wait_ports_active(cp.neutron_url, [v["port_id"] for v in s["vms"]], token=cp.admin_token)
    cp.timings["ports"] = round(time.monotonic() - t, 1)
    _refresh_ports(lab)
    lab.save()
    if agents:
        agent = ks.users["taas-agent"]
        login = ["--os-auth-url", ks.auth_url, "--os-username", agent.name,
                 "--os-password", agent.password, "--os-project-name", agent.project]
        lab.start_agents(cp.taas_url, "-", extra_args=[*TAAS_AGENT_ARGS, *login, *agent_args])
        _wait_taas(lab)


def _record_keystone(lab: Lab, ks: Keystone) -> None:
    """The spec's projects become Keystone's (networks and VMs get their ids); the state file
    gets Keystone's URLs and users, the admin's token (neutron.token, server.token) and a
    clouds.yaml beside it: one cloud `admin`, one per project (its `<project>-member`)."""
    s = lab.state
    ids = {n["project_id"]: ks.project_id(n["project_id"]) for n in s["networks"]}
    for item in (*s["networks"], *s["vms"]):
        item["project_id"] = ids[item["project_id"]]
    ks.users["admin"] = User("admin", ks.admin_password, "admin", ["admin"])
    clouds = ks.clouds_yaml(Path(s["lab_dir"]) / "clouds.yaml",
                            {"admin": "admin", **{p: f"{p}-member" for p in ids}})
    s["keystone"] = {
        "url": ks.url, "auth_url": ks.auth_url, "region": REGION, "clouds_yaml": str(clouds),
        "projects": dict(ks.projects), "admin_password": ks.admin_password,
        "users": {u.name: {"password": u.password, "project": u.project, "roles": u.roles,
                           "id": u.id} for u in ks.users.values()}}
    s["neutron"]["token"] = ks.admin_token()
    lab.save()


def keystone_of(lab: Lab) -> Keystone:
    """The lab's Keystone, to add users and issue tokens (as its admin)."""
    k = lab.state["keystone"]
    ks = Keystone(workdir=Path(lab.state["lab_dir"]) / "ctl" / "keystone", port=KEYSTONE_PORT,
                  db_url="", netns=lab.state["neutron"]["netns"], public_url=k["url"],
                  admin_password=k["admin_password"])
    ks.projects = dict(k["projects"])
    ks.users = {n: User(n, u["password"], u["project"], list(u["roles"]), u.get("id", ""))
                for n, u in k["users"].items()}
    return ks


def move_vm(lab: Lab, vm: str, host: str, timeout: float = 60) -> None:
    """Live-migrate a VM the way Nova does it: unplug its port on its host, plug it on `host`
    (same iface-id, MAC, device), bind the Neutron port there, wait until it is ACTIVE."""
    s = lab.state
    v = next(x for x in s["vms"] if x["name"] == vm)
    hosts = {h["name"]: h for h in s["hosts"]}
    old, new = hosts[v["host"]], hosts[host]
    tap = v["host_interface"]
    _ovs(old, "--", "--if-exists", "del-port", "br-int", tap)
    _run(["ip", "-n", old["netns"], "link", "set", tap, "netns", new["netns"]])
    _run(["ip", "-n", new["netns"], "link", "set", tap, "up"])
    api = _Neutron(s["neutron"]["url"], s["neutron"]["token"])
    try:
        api.call("PUT", f"/v2.0/ports/{v['port_id']}", {"port": {"binding:host_id": host}})
    finally:
        api.close()
    v["host"] = host
    _plug(new, v, {"id": v["port_id"]})

    def wired() -> bool:  # the new host's agent tagged it with a live local VLAN
        tag = _ovs(new, "get", "Port", v["host_interface"], "tag").strip()
        return tag.isdigit() and 0 < int(tag) < 4095

    _wait(f"{vm} wired on {host}", wired, timeout, interval=0.2)
    wait_ports_active(s["neutron"]["url"], [v["port_id"]], timeout, s["neutron"]["token"])
    _refresh_ports(lab)
    lab.save()


def restart_neutron_agent(lab: Lab, host: str) -> int:
    """Stop (SIGTERM, as a service manager would) and start the host's
    neutron-openvswitch-agent; the new pid. It resyncs on its own."""
    s = lab.state
    h = next(x for x in s["hosts"] if x["name"] == host)
    entry = next(a for a in s["neutron"]["agents"] if a["host"] == host)
    stop_group(entry["pid"])
    cp = ControlPlane(lab.name, s["lab_dir"], s["hosts"])
    cp.transport_url = s["neutron"]["transport_url"]
    entry["pid"] = cp.start_agent(h)
    lab.save()
    return int(entry["pid"])


def stop_group(pid: int, timeout: float = 15) -> None:
    """SIGTERM the process group of a daemon we started (the agent and its helpers), SIGKILL
    after `timeout`; reap it."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
