"""Tenant networking in the shared lab: reachability, isolation, flooding; lab shape; reset."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets

import pytest

from taas.lab import L2_COOKIE, Lab

pytestmark = pytest.mark.ovs

BROADCAST = "ff:ff:ff:ff:ff:ff"
ETHERTYPE_TEST = 0x88B5  # IEEE "local experimental": nothing else in the lab sends it


def frame(dst: str, src: str, marker: bytes) -> bytes:
    hdr = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    return hdr + ETHERTYPE_TEST.to_bytes(2, "big") + marker.ljust(46, b"\0")


def with_marker(frames: list[bytes], marker: bytes) -> list[bytes]:
    return [f for f in frames if marker in f]


def test_same_network_reaches_same_host_and_across_hosts(lab: Lab) -> None:
    assert lab.vm("vm1").host == lab.vm("mon").host  # same host
    assert lab.vm("vm1").host != lab.vm("vm2").host  # across hosts (VXLAN)
    for src, dst in [("vm1", "mon"), ("vm1", "vm2"), ("vm2", "vm3"), ("vm3", "mon"),
                     ("vm4", "vm5")]:
        r = lab.ping(src, dst, 3)
        assert r.ok, f"{src} -> {dst}: {r.output}"
    # TCP through the userspace datapath carries the full payload (tx offload is off).
    assert lab.tcp_transfer("vm1", "mon", 1_000_000) == 1_000_000
    assert lab.tcp_transfer("vm1", "vm3", 2_000_000) == 2_000_000
    assert lab.tcp_transfer("vm5", "vm4", 1_000_000, port=5301) == 1_000_000


def test_different_networks_cannot_talk(lab: Lab) -> None:
    vm1, vm4, vm5 = lab.vm("vm1"), lab.vm("vm4"), lab.vm("vm5")
    net_b = lab.network("net-b")
    # Make net-b on-link for vm1 so it really ARPs for vm4/vm5 on its own segment.
    lab.exec("vm1", f"ip route add {net_b.cidr} dev eth0")
    try:
        marker, sentinel = secrets.token_bytes(8), secrets.token_bytes(8)
        with lab.captures(["vm4", "vm5", "mon", "vm2"]) as caps:
            assert lab.ping("vm1", vm4.ip, 2, timeout=0.3).received == 0
            assert lab.ping("vm1", vm5.ip, 2, timeout=0.3).received == 0
            # Straight L2: unicast to their MACs and a broadcast, from both hosts' sides.
            lab.send_frames("vm1", [frame(vm4.mac, vm1.mac, marker),
                                    frame(vm5.mac, vm1.mac, marker),
                                    frame(BROADCAST, vm1.mac, marker)])
            # Sentinel: a broadcast vm1 sends next in its own network reaches a VM on each
            # host (mon: host1 like vm4, vm2: host2 like vm5), so every frame before it has
            # been through both switches.
            lab.send_frames("vm1", [frame(BROADCAST, vm1.mac, sentinel)])
            for seen_by in ("mon", "vm2"):
                assert caps[seen_by].wait_for(1, timeout=5, match=lambda f: sentinel in f)
        for name, cap in ((n, caps[n]) for n in ("vm4", "vm5")):
            assert not [f for f in cap.frames if f[6:12] == bytes.fromhex(
                vm1.mac.replace(":", ""))], f"{name} saw frames from vm1"
            assert not with_marker(cap.frames, marker)
    finally:
        lab.exec("vm1", f"ip route del {net_b.cidr} dev eth0", check=False)


def test_broadcast_reaches_exactly_its_network(lab: Lab) -> None:
    all_vms = [v.name for v in lab.vms]
    for sender in ("vm1", "vm5"):
        src = lab.vm(sender)
        marker = secrets.token_bytes(8)
        with lab.captures(all_vms) as caps:
            lab.send_frames(sender, [frame(BROADCAST, src.mac, marker)])
            same = [v.name for v in lab.vms if v.network_id == src.network_id and v.name != sender]
            for name in same:
                caps[name].wait_for(1, timeout=3, match=lambda f, m=marker: m in f)
        for v in lab.vms:
            got = with_marker(caps[v.name].frames, marker)
            if v.network_id == src.network_id:
                # Exactly one copy everywhere in the network (the sender sees its own tx once).
                assert len(got) == 1, f"{sender}'s broadcast at {v.name}: {len(got)} copies"
                assert got[0] == frame(BROADCAST, src.mac, marker)
            else:
                assert got == [], f"{sender}'s broadcast leaked to {v.name}"


def test_lab_looks_like_a_neutron_node(lab: Lab) -> None:
    state = json.loads(lab.state_file.read_text())
    for key in ("name", "hosts", "networks", "vms", "collectors", "agents"):
        assert key in state
    others = {h.name: h.tunnel_ip for h in lab.hosts}
    for h in lab.hosts:
        assert h.ovsdb == f"unix:{h.run_dir}/db.sock"
        assert sorted(lab.ovs(h.name, ["ovs-vsctl", "list-br"]).split()) == \
            ["br-int", "br-phy", "br-tun"]
        for br in ("br-int", "br-tun", "br-phy"):
            assert lab.ovs(h.name, ["ovs-vsctl", "get", "Bridge", br, "datapath_type"]).strip() \
                == "netdev"
            for f in lab.dump_flows(h.name, br):  # ovs-ofctl reaches <run_dir>/<br>.mgmt
                assert f.startswith(f"cookie={L2_COOKIE:#x},"), f
        assert "actions=NORMAL" in " ".join(lab.dump_flows(h.name, "br-int", "table=0"))
        # VXLAN ports to every other host, remote_ip readable from OVSDB.
        for ip in (ip for n, ip in others.items() if n != h.name):
            port = h.vxlan_ports[ip]
            opts = lab.ovs(h.name, ["ovs-vsctl", "get", "Interface", port, "options"])
            assert f'remote_ip="{ip}"' in opts and 'key=flow' in opts
            assert lab.ofport(h.name, port) == h.ofports["br-tun"][port]
        # Userspace tunnelling knows every peer's underlay MAC (no first-packet loss).
        neigh = lab.ovs(h.name, ["ovs-appctl", "tnl/neigh/show"])
        for o in lab.state["hosts"]:
            if o["name"] != h.name:
                assert o["tunnel_ip"] in neigh and o["underlay_mac"] in neigh
        for c in lab.state["collectors"]:
            assert c["ip"] in neigh and c["mac"] in neigh
        t4 = " ".join(lab.dump_flows(h.name, "br-tun", "table=4"))
        t22 = " ".join(lab.dump_flows(h.name, "br-tun", "table=22"))
        for net_id, vlan in h.local_vlans.items():
            n = lab.network(net_id)
            assert f"tun_id={n.vni:#x} actions=mod_vlan_vid:{vlan}" in t4
            assert f"dl_vlan={vlan} actions=strip_vlan,set_tunnel:{n.vni:#x}" in t22
    for v in lab.vms:
        ext = lab.ovs(v.host, ["ovs-vsctl", "get", "Interface", v.host_interface,
                               "external_ids"])
        assert f'iface-id="{v.port_id}"' in ext and f'attached-mac="{v.mac}"' in ext
        assert "iface-status=active" in ext
        assert int(lab.ovs(v.host, ["ovs-vsctl", "get", "Port", v.host_interface, "tag"])) == \
            v.local_vlan == lab.host(v.host).local_vlans[v.network_id]
        assert lab.ofport(v.host, v.host_interface) == v.ofport
        link = lab.exec(v.name, "ip -o link show eth0; ethtool -k eth0 | grep tx-checksumming; "
                        "ip -6 addr show").stdout
        assert v.mac in link and "tx-checksumming: off" in link and "inet6" not in link


def l2_flows(lab: Lab, host: str, bridge: str) -> list[str]:
    """A bridge's flows without counters and without MAC-learned entries."""
    out = []
    for f in lab.dump_flows(host, bridge):
        if "hard_timeout=300" in f and "learn(" not in f:
            continue
        out.append(re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ", "", f))
    return sorted(out)


def test_reset_removes_taas_artefacts_only(lab: Lab) -> None:
    h = lab.hosts[0].name
    l2_before = l2_flows(lab, h, "br-tun")
    lab.ovs(h, ["ovs-ofctl", "add-flow", "br-int",
                "cookie=0x7a5,table=0,priority=100,in_port=1,actions=drop"])
    lab.ovs(h, ["ovs-ofctl", "add-flow", "br-tun", "cookie=0x7a5,table=22,priority=5,actions=drop"])
    lab.ovs(h, ["ovs-vsctl", "add-br", "br-tap", "--", "set", "Bridge", "br-tap",
                "datapath_type=netdev", "--", "add-port", "br-int", "patch-int-tap", "--", "set",
                "Interface", "patch-int-tap", "type=patch", "options:peer=patch-tap-int"])
    vm1, mon = lab.vm("vm1"), lab.vm("mon")
    assert vm1.host == mon.host == h
    lab.ovs(h, ["ovs-vsctl", "set", "Port", vm1.host_interface, "tag=99"])
    lab.ovs(h, ["ovs-vsctl", "del-port", "br-int", mon.host_interface])  # unplugged
    sleeper = lab.popen("vm1", "sleep 100")
    lab.reset()  # (its duration is measured by bench/lab_bench.py, not asserted here)
    assert sleeper.poll() is not None
    assert lab.ofport(h, mon.host_interface) == mon.ofport
    assert sorted(lab.ovs(h, ["ovs-vsctl", "list-br"]).split()) == ["br-int", "br-phy", "br-tun"]
    assert "patch-int-tap" not in lab.ovs(h, ["ovs-vsctl", "list-ports", "br-int"])
    for br in ("br-int", "br-tun"):
        assert all("cookie=0x1," in f for f in lab.dump_flows(h, br))
    assert l2_flows(lab, h, "br-tun") == l2_before
    assert lab.ping("vm1", "vm2", 2).ok and lab.ping("vm1", "mon", 2).ok
    assert lab.ping("mon", "vm3", 2).ok


def test_capture_helpers(lab: Lab) -> None:
    vm1, mon = lab.vm("vm1"), lab.vm("mon")
    marker = secrets.token_bytes(8)
    with lab.capture("mon", bpf=f"ether proto {ETHERTYPE_TEST:#x}") as cap:
        lab.send_frames("vm1", [frame(mon.mac, vm1.mac, marker + bytes([i])) for i in range(5)])
        assert len(cap.wait_for(5, timeout=3)) == 5  # readable while running
    assert [f[14:23] for f in cap.frames] == [marker + bytes([i]) for i in range(5)]
    assert b"packets dropped by kernel" in cap._err and cap.dropped == 0  # tcpdump's summary
    pkts = cap.packets()
    assert pkts[0].src == vm1.mac and pkts[0].type == ETHERTYPE_TEST
    # Capture on a host's underlay: the VXLAN packets of cross-host traffic.
    with lab.capture(lab.vm("vm2").host, "phy0", bpf="udp port 4789") as ucap:
        assert lab.ping("vm1", "vm2", 2).ok
    assert len(ucap.frames) >= 4


def test_collector_on_the_underlay(lab: Lab) -> None:
    col = lab.collector("col1")
    assert ipaddress.ip_address(col.ip) in ipaddress.ip_network(lab.state["underlay_cidr"])
    with lab.capture("col1", bpf="icmp") as cap:
        for h in lab.hosts:
            lab.exec(h.name, f"ping -c1 -W2 {col.ip}")  # each host's br-phy reaches it
    assert len(cap.frames) == 2 * len(lab.hosts)  # requests and replies
    # Nothing but underlay: the collector has exactly one address and no route beyond it.
    addrs = lab.exec("col1", "ip -o -4 addr show scope global").stdout
    assert addrs.count("inet ") == 1 and col.ip in addrs
