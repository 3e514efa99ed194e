"""Building a lab: namespaces, the underlay fabric, one OVS per host, VMs and collectors.

Every veth is created directly inside its two namespaces, so deleting the namespaces removes
it and nothing ever appears in the root namespace. Host daemons, VMs and collectors are set up
in parallel threads; each host's OVS is configured in one ovs-vsctl transaction and one
add-flows per bridge.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from taas.lab import spec as specmod
from taas.lab.sh import netns_cmd, run
from taas.lab.state import L2_COOKIE, LAB_BRIDGES, UNDERLAY_MTU, Host, view, vxlan_port_name

OF_PROTOCOLS = "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
_NO_IPV6 = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1"]
# userspace datapath: with tx checksum offload TCP carries 0 bytes
_TX_OFFLOAD_OFF = "ethtool -K eth0 tx off >/dev/null"


def start_ovs(netns: str, run_dir: str, ovsdb: str) -> None:
    """Start a host's ovsdb-server and ovs-vswitchd on the database in `run_dir` (also what a
    test does to simulate an OVS restart)."""
    rd = run_dir
    env = {**os.environ, "OVS_RUNDIR": rd, "OVS_DBDIR": rd, "OVS_LOGDIR": rd,
           "OVS_PKGDATADIR": "/usr/share/openvswitch"}
    common = ["--detach", "--no-chdir", "-vconsole:off", "-vsyslog:off"]
    run(netns_cmd(netns, ["ovsdb-server", f"{rd}/conf.db", f"--remote=punix:{rd}/db.sock",
                          f"--pidfile={rd}/ovsdb-server.pid",
                          f"--log-file={rd}/ovsdb-server.log",
                          f"--unixctl={rd}/ovsdb-server.ctl", *common]), env=env)
    run(["ovs-vsctl", f"--db={ovsdb}", "--no-wait", "init"])
    run(netns_cmd(netns, ["ovs-vswitchd", ovsdb, f"--pidfile={rd}/ovs-vswitchd.pid",
                          f"--log-file={rd}/ovs-vswitchd.log", *common]), env=env)


def vm_port_cmd(v: dict[str, Any], ofport: int) -> list[str]:
    """ovs-vsctl args plugging a VM's tap into br-int the way Nova/os-vif does (fixed ofport:
    `reset()` can re-plug it under the same number)."""
    t = v["host_interface"]
    return ["--", "--may-exist", "add-port", "br-int", t, "--", "set", "Port", t,
            f"tag={v['local_vlan']}", "--", "set", "Interface", t, f"ofport_request={ofport}",
            f"external_ids:iface-id={v['port_id']}", f"external_ids:attached-mac={v['mac']}",
            "external_ids:iface-status=active", f"external_ids:vm-uuid={v['device_id']}"]


def tunnel_neighbors(state: dict[str, Any], h: Host) -> None:
    """Give OVS's userspace tunnel code the underlay MAC of every other host and collector.

    OVS only learns them by snooping ARP on br-phy, and drops the packet that triggers its own
    ARP request: the first mirrored or tunnelled frame would be lost. Entries still age out
    (3600 s at most on OVS 3.1); `reset()` refreshes them."""
    ctl = h.vswitchd_ctl()
    run(["ovs-appctl", "-t", ctl, "tnl/neigh/aging", "3600"])
    peers = [(o["tunnel_ip"], o["underlay_mac"]) for o in state["hosts"]
             if o["name"] != h.name and o.get("underlay_mac")]
    peers += [(c["ip"], c["mac"]) for c in state.get("collectors", []) if c.get("mac")]
    for ip, mac in peers:
        run(["ovs-appctl", "-t", ctl, "tnl/neigh/set", "br-phy", ip, mac])


def vm_veth(v: dict[str, Any], host_netns: str) -> None:
    """A VM's NIC: veth `eth0` (its MAC and IP) in the VM's namespace, peer `tap...` up in the
    host's namespace, not yet on br-int (also what a test does to move a VM to another host)."""
    run(["ip", "link", "add", "eth0", "netns", v["netns"], "address", v["mac"], "type",
         "veth", "peer", "name", v["host_interface"], "netns", host_netns])
    run(netns_cmd(v["netns"], ["sh", "-ec",
        f"ip addr add {v['ip']}/{v['prefixlen']} dev eth0; ip link set eth0 up; "
        + _TX_OFFLOAD_OFF]))
    run(["ip", "-n", host_netns, "link", "set", v["host_interface"], "up"])


def _link_mac(netns: str, dev: str) -> str:
    return str(json.loads(run(["ip", "-n", netns, "-j", "link", "show", "dev", dev]))[0]
               ["address"])


class Builder:
    """Builds the lab a plan describes and fills the state's build-time fields (ofports, vxlan
    ports, underlay MACs). `save` persists the state: it is called before the first namespace
    exists, so that a crash from there on can be cleaned up by name."""

    def __init__(self, state: dict[str, Any], plan: specmod.Plan, save: Callable[[], None],
                 log: Callable[[str], None]) -> None:
        self.s, self.plan, self.save, self.log = state, plan, save, log
        self.prefixlen = int(plan.underlay_cidr.split("/")[1])

    def build(self) -> None:
        t0 = time.monotonic()
        Path(self.s["lab_dir"]).mkdir(parents=True, exist_ok=True)
        self.save()
        fab = self.s["fabric_netns"]
        # Namespaces one after another: concurrent `ip netns add` can race on the first
        # mount of /run/netns.
        for ns in [fab] + [h["netns"] for h in self.s["hosts"]] + \
                [v["netns"] for v in self.s["vms"]] + [c["netns"] for c in self.s["collectors"]]:
            self._netns(ns)
        run(["ip", "-n", fab, "link", "add", "fab0", "mtu", str(UNDERLAY_MTU), "type",
             "bridge", "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", fab, "link", "set", "fab0", "up"])
        workers = min(8, 2 + len(self.s["vms"]))
        with ThreadPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(self._host_daemons, h) for h in self.s["hosts"]]
            futs += [ex.submit(self._vm, v) for v in self.s["vms"]]
            futs += [ex.submit(self._collector, c) for c in self.s["collectors"]]
            for f in futs:
                f.result()
            futs = [ex.submit(self._host_ovs, h) for h in self.s["hosts"]]
            for f in futs:
                f.result()
            for h in self.s["hosts"]:
                h["underlay_mac"] = _link_mac(h["netns"], "br-phy")
            for c in self.s["collectors"]:
                c["mac"] = _link_mac(c["netns"], "eth0")
            list(ex.map(lambda h: tunnel_neighbors(self.s, view(Host, h)), self.s["hosts"]))
        self.s["build_seconds"] = round(time.monotonic() - t0, 3)
        self.log(f"lab {self.s['name']} up in {self.s['build_seconds']}s")

    @staticmethod
    def _netns(ns: str) -> None:
        run(["ip", "netns", "add", ns])
        run(netns_cmd(ns, _NO_IPV6))
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _host_daemons(self, h: dict[str, Any]) -> None:
        ns, rd = h["netns"], h["run_dir"]
        Path(rd).mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", f"{rd}/conf.db", OVS_SCHEMA])
        start_ovs(ns, rd, h["ovsdb"])
        # Underlay veth straight into both namespaces.
        fab = self.s["fabric_netns"]
        run(["ip", "link", "add", "phy0", "netns", ns, "mtu", str(UNDERLAY_MTU), "type", "veth",
             "peer", "name", h["fabric_interface"], "netns", fab, "mtu", str(UNDERLAY_MTU)])
        run(["ip", "-n", fab, "link", "set", h["fabric_interface"], "master", "fab0", "up"])
        run(["ip", "-n", ns, "link", "set", "phy0", "up"])

    def _vm(self, v: dict[str, Any]) -> None:
        host = next(h for h in self.s["hosts"] if h["name"] == v["host"])
        vm_veth(v, host["netns"])

    def _collector(self, c: dict[str, Any]) -> None:
        fab = self.s["fabric_netns"]
        run(["ip", "link", "add", "eth0", "netns", c["netns"], "mtu", str(UNDERLAY_MTU), "type",
             "veth", "peer", "name", c["fabric_interface"], "netns", fab, "mtu",
             str(UNDERLAY_MTU)])
        run(["ip", "-n", fab, "link", "set", c["fabric_interface"], "master", "fab0", "up"])
        run(netns_cmd(c["netns"], ["sh", "-ec",
            f"ip addr add {c['ip']}/{self.prefixlen} dev eth0; ip link set eth0 up; "
            + _TX_OFFLOAD_OFF]))

    def _host_ovs(self, h: dict[str, Any]) -> None:
        db = f"--db={h['ovsdb']}"
        others = [x for x in self.s["hosts"] if x["name"] != h["name"]]
        vms = [v for v in self.s["vms"] if v["host"] == h["name"]]
        c: list[str] = []
        for b in LAB_BRIDGES:
            # secure: no implicit NORMAL flow with cookie 0; the lab installs its own.
            c += ["--", "add-br", b, "--", "set", "Bridge", b, "datapath_type=netdev",
                  "fail_mode=secure", f"protocols={OF_PROTOCOLS}",
                  f"external_ids:taas-lab={self.s['name']}"]
        # A fixed MAC for br-phy: OVS would otherwise pick one from its ports and may change
        # it, invalidating the tunnel neighbour entries the other hosts hold.
        ul_mac = "02:00:" + ":".join(f"{int(o):02x}" for o in h["tunnel_ip"].split("."))
        c += ["--", "set", "Bridge", "br-phy", f"other_config:hwaddr={ul_mac}"]
        c += ["--", "add-port", "br-phy", "phy0"]
        c += ["--", "add-port", "br-int", "patch-tun", "--", "set", "Interface", "patch-tun",
              "type=patch", "options:peer=patch-int", "ofport_request=1"]
        c += ["--", "add-port", "br-tun", "patch-int", "--", "set", "Interface", "patch-int",
              "type=patch", "options:peer=patch-tun", "ofport_request=1"]
        vx: dict[str, str] = {}
        for i, o in enumerate(others, 2):
            pn = vxlan_port_name(o["tunnel_ip"])
            vx[o["tunnel_ip"]] = pn
            c += ["--", "add-port", "br-tun", pn, "--", "set", "Interface", pn, "type=vxlan",
                  f"options:remote_ip={o['tunnel_ip']}", f"options:local_ip={h['tunnel_ip']}",
                  "options:key=flow", f"ofport_request={i}"]
        for i, v in enumerate(vms, 2):
            c += vm_port_cmd(v, i)
        run(["ovs-vsctl", db, "--timeout=60", *c])  # waits until vswitchd applied it
        out = run(["ovs-vsctl", db, "--format=json", "--", "--columns=name,ofport", "list",
                   "Interface"])
        ofp = {r[0]: r[1] for r in json.loads(out)["data"]}
        h["vxlan_ports"] = vx
        h["ofports"] = {
            "br-int": {"patch-tun": ofp["patch-tun"],
                       **{v["host_interface"]: ofp[v["host_interface"]] for v in vms}},
            "br-tun": {"patch-int": ofp["patch-int"], **{pn: ofp[pn] for pn in vx.values()}},
            "br-phy": {"phy0": ofp["phy0"]},
        }
        for v in vms:
            v["ofport"] = ofp[v["host_interface"]]
        bad = {k: n for k, n in ofp.items() if not isinstance(n, int) or n < 0}
        if bad:
            raise RuntimeError(f"host {h['name']}: ports without ofport: {bad}")
        for b, text in l2_flows(self.s, h).items():
            Path(h["run_dir"], f"{b}.l2flows").write_text(text)
            run(["ovs-ofctl", "add-flows", f"unix:{h['run_dir']}/{b}.mgmt", "-"], input=text)
        run(["ip", "-n", h["netns"], "addr", "add", f"{h['tunnel_ip']}/{self.prefixlen}", "dev",
             "br-phy"])
        run(["ip", "-n", h["netns"], "link", "set", "br-phy", "mtu", str(UNDERLAY_MTU), "up"])


def l2_flows(state: dict[str, Any], h: dict[str, Any]) -> dict[str, str]:
    """The flows a Neutron OVS agent would install (LAB.md table), with the lab's cookie:
    bridge -> add-flows text."""
    ck = f"cookie={L2_COOKIE:#x}"
    tun = h["ofports"]["br-tun"]
    patch_int = tun["patch-int"]
    vx_ofports = [tun[p] for p in h["vxlan_ports"].values()]
    nets = {n["id"]: n for n in state["networks"]}
    t: list[str] = [f"{ck},table=0,priority=1,in_port={patch_int},actions=resubmit(,2)"]
    t += [f"{ck},table=0,priority=1,in_port={p},actions=resubmit(,4)" for p in vx_ofports]
    t += [f"{ck},table=0,priority=0,actions=drop",
          f"{ck},table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,"
          "actions=resubmit(,20)",
          f"{ck},table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,"
          "actions=resubmit(,22)",
          f"{ck},table=4,priority=0,actions=drop",
          f"{ck},table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,"
          f"{ck},NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
          "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
          f"output:OXM_OF_IN_PORT[]),output:{patch_int}",
          f"{ck},table=20,priority=0,actions=resubmit(,22)",
          f"{ck},table=22,priority=0,actions=drop"]
    for net_id, vlan in h["local_vlans"].items():
        vni = nets[net_id]["vni"]
        t.append(f"{ck},table=4,priority=1,tun_id={vni:#x},"
                 f"actions=mod_vlan_vid:{vlan},resubmit(,10)")
        if vx_ofports:
            outs = ",".join(f"output:{p}" for p in vx_ofports)
            t.append(f"{ck},table=22,priority=1,dl_vlan={vlan},"
                     f"actions=strip_vlan,set_tunnel:{vni:#x},{outs}")
    return {
        "br-int": f"{ck},table=0,priority=0,actions=NORMAL\n",
        "br-tun": "\n".join(t) + "\n",
        "br-phy": f"{ck},table=0,priority=0,actions=NORMAL\n",
    }
