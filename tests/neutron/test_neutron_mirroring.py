"""taas on a real Neutron (issue 8): real neutron-server, neutron-openvswitch-agent on every
host with port security, VMs as Neutron ports, taas-server reading ports from Neutron.
Packets are captured at the monitor, the VMs and the hosts' underlay.

The tests share one lab and run in file order (the agent restart comes last).
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from taas.lab.neutron import move_vm, restart_neutron_agent
from taas.testing.wait import wait_until

from .conftest import NeutronSystem

pytestmark = pytest.mark.ovs

ETH_TEST = 0x88B5  # IEEE local experimental ethertype: our probe frames, nothing else uses it
BCAST = "ff:ff:ff:ff:ff:ff"
FORGED = "fa:16:3e:0f:0f:0f"
TAAS_VNIS = range(16_003_900, 16_004_000)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def frame(src: str, dst: str, tag: str) -> bytes:
    """A probe frame (padded to 64 bytes) carrying a unique tag."""
    body = tag.encode().ljust(50, b".")
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ETH_TEST) + body


def probes(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[12:14] == struct.pack("!H", ETH_TEST)]


def vxlan_vnis(frames: list[bytes]) -> list[int]:
    """VNIs of the VXLAN (UDP 4789) frames of an underlay capture."""
    out = []
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 0x0F) * 4
        udp = 14 + ihl
        if struct.unpack("!H", f[udp + 2:udp + 4])[0] == 4789:
            out.append(int.from_bytes(f[udp + 12:udp + 15], "big"))
    return out


CTX: dict[str, Any] = {}


def _service(nsys: NeutronSystem) -> str:
    if "ts" not in CTX:
        ts = nsys.create("tap_services", {"name": "mon", "port_id": nsys.lab.vm("mon").port_id})
        nsys.wait_status("tap_services", ts["id"], "ACTIVE")
        CTX["ts"] = ts["id"]
    return str(CTX["ts"])


def _flow(nsys: NeutronSystem, src: str, direction: str) -> str:
    tf = nsys.create("tap_flows", {"name": f"{src}-{direction}", "tap_service_id": _service(nsys),
                                   "source_port": nsys.lab.vm(src).port_id,
                                   "direction": direction})
    nsys.wait_status("tap_flows", tf["id"], "ACTIVE")
    return str(tf["id"])


def _drop_flow(nsys: NeutronSystem, tf: str) -> None:
    nsys.delete("tap_flows", tf)
    nsys.wait_gone("tap_flows", tf)


def test_inventory_mirrors_neutron_and_is_read_only(nsys: NeutronSystem) -> None:
    """taas-server's networks and ports are Neutron's (ids, VNIs, MACs, bindings); writes
    are refused in Neutron's error format and change nothing."""
    lab = nsys.lab
    nets = {n["id"]: n for n in nsys.taas.get("/v2.0/networks").json()["networks"]}
    assert {nets[n.id]["provider:segmentation_id"] for n in lab.networks} == {100, 101, 102}
    ports = {p["id"]: p for p in nsys.taas.get("/v2.0/ports").json()["ports"]}
    for v in lab.vms:
        assert (ports[v.port_id]["mac_address"], ports[v.port_id]["binding:host_id"]) == \
            (v.mac, v.host)
    r = nsys.taas.post("/v2.0/ports", json={"port": {"network_id": lab.vm("vm1").network_id}})
    assert r.status_code == 409
    assert r.json()["NeutronError"]["type"] == "Conflict"
    r = nsys.taas.delete(f"/v2.0/ports/{lab.vm('vm1').port_id}")
    assert r.status_code == 409
    assert nsys.taas.get(f"/v2.0/ports/{lab.vm('vm1').port_id}").status_code == 200


def test_neutron_network_in_the_taas_vni_range_is_refused(nsys: NeutronSystem) -> None:
    """A Neutron network whose VNI lies in the taas range is not imported (its frames would be
    taken for copies); a network created after it (the sentinel) is."""
    def net(name: str, vni: int) -> str:
        r = nsys.neutron.post("/v2.0/networks", json={"network": {
            "name": name, "project_id": nsys.project("project-a"), "provider:network_type": "vxlan",
            "provider:segmentation_id": vni}})
        assert r.status_code == 201, r.text
        return str(r.json()["network"]["id"])

    bad, good = net("in-taas-range", 16_003_950), net("sentinel", 300)
    try:
        wait_until(lambda: nsys.taas.get(f"/v2.0/networks/{good}").status_code == 200, 30, 0.1,
                   what="the sentinel network in taas-server")
        r = nsys.taas.get(f"/v2.0/networks/{bad}")
        assert r.status_code == 404, r.text
    finally:
        for n in (bad, good):
            nsys.neutron.delete(f"/v2.0/networks/{n}")


@pytest.mark.parametrize("src,peer", [("vm1", "vm3"), ("vm2", "vm1")], ids=["local", "remote"])
def test_directions_copy_each_frame_once_untagged(nsys: NeutronSystem, src: str,
                                                  peer: str) -> None:
    """IN/OUT/BOTH, unicast and broadcast: at the monitor each frame exactly once,
    byte-identical (so untagged); the peer and the source get their frames exactly once;
    host3's underlay carries no taas VNI."""
    lab = nsys.lab
    s, p = lab.vm(src), lab.vm(peer)
    # MAC learning first, so unicast probes are not flooded (which would not change the copies
    # but would the tenant-side counts).
    assert lab.ping(src, peer, 2)
    for direction in ("OUT", "IN", "BOTH"):
        tf = _flow(nsys, src, direction)
        sent = {
            "out-u": [frame(s.mac, p.mac, f"{direction}-out-u-{i}") for i in range(2)],
            "out-b": [frame(s.mac, BCAST, f"{direction}-out-b")],
            "in-u": [frame(p.mac, s.mac, f"{direction}-in-u-{i}") for i in range(2)],
            "in-b": [frame(p.mac, BCAST, f"{direction}-in-b")],
        }
        with lab.captures(["mon", src, peer, "host3"], direction="in") as caps:
            lab.send_frames(src, sent["out-u"] + sent["out-b"])
            lab.send_frames(peer, sent["in-u"] + sent["in-b"])
            want = {"OUT": ("out-u", "out-b"), "IN": ("in-u", "in-b"),
                    "BOTH": ("out-u", "out-b", "in-u", "in-b")}[direction]
            expected = sorted(f for k in want for f in sent[k])
            caps["mon"].wait_for(len(expected), timeout=5,
                                 match=lambda f: f[12:14] == struct.pack("!H", ETH_TEST))
        mon = probes(caps["mon"].frames)
        assert sorted(mon) == expected, (direction, [f[14:30] for f in mon])
        assert all(f[12:14] != b"\x81\x00" for f in caps["mon"].frames)
        # Tenant traffic unchanged: each probe delivered exactly once where it belongs.
        assert sorted(probes(caps[peer].frames)) == sorted(sent["out-u"] + sent["out-b"])
        assert sorted(probes(caps[src].frames)) == sorted(sent["in-u"] + sent["in-b"])
        assert not [v for v in vxlan_vnis(caps["host3"].frames) if v in TAAS_VNIS]
        _drop_flow(nsys, tf)


def test_same_mac_in_another_network_is_not_copied(nsys: NeutronSystem) -> None:
    """IN on vm1 (net-a): frames to vm4, in net-b with vm1's MAC, are not copied."""
    lab = nsys.lab
    vm1, vm3, vm4, vm5 = (lab.vm(n) for n in ("vm1", "vm3", "vm4", "vm5"))
    assert vm4.mac == vm1.mac and vm4.network_id != vm1.network_id
    assert lab.ping("vm5", "vm4", 2) and lab.ping("vm3", "vm1", 2)
    tf = _flow(nsys, "vm1", "IN")
    other = [frame(vm5.mac, vm4.mac, f"samemac-{i}") for i in range(3)]
    sentinel = frame(vm3.mac, vm1.mac, "samemac-sentinel")
    with lab.captures(["mon", "vm4"], direction="in") as caps:
        lab.send_frames("vm5", other)
        lab.send_frames("vm3", [sentinel])
        caps["mon"].wait_for(1, timeout=5, match=lambda f: f == sentinel)
    assert probes(caps["mon"].frames) == [sentinel]
    assert sorted(probes(caps["vm4"].frames)) == sorted(other)
    _drop_flow(nsys, tf)


def _forge(nsys: NeutronSystem) -> dict[str, list[bytes]]:
    """vm1 sends forged-source frames (to vm3 local, vm2 remote, broadcast) then one genuine
    sentinel to vm3; what vm2, vm3 and the monitor got."""
    lab = nsys.lab
    vm1, vm2, vm3 = (lab.vm(n) for n in ("vm1", "vm2", "vm3"))
    forged = [frame(FORGED, vm3.mac, "forged-l"), frame(FORGED, vm2.mac, "forged-r"),
              frame(FORGED, BCAST, "forged-b")]
    sentinel = frame(vm1.mac, vm3.mac, f"genuine-{time.monotonic_ns()}")
    with lab.captures(["mon", "vm2", "vm3"], direction="in") as caps:
        lab.send_frames("vm1", [*forged, sentinel], interval=0.01)
        caps["vm3"].wait_for(1, timeout=5, match=lambda f: f == sentinel)
    got = {k: probes(c.frames) for k, c in caps.items()}
    got["sentinel"] = [sentinel]
    return got


def test_forged_source_mac_neither_delivered_nor_copied(nsys: NeutronSystem) -> None:
    """Port security holds for a tapped port: forged frames are dropped as without the tap flow,
    and never copied; the genuine sentinel is delivered and copied once."""
    assert nsys.lab.ping("vm1", "vm3", 2) and nsys.lab.ping("vm1", "vm2", 2)
    before = _forge(nsys)
    assert before["vm3"] == before["sentinel"] and before["vm2"] == [] and before["mon"] == []
    tf = _flow(nsys, "vm1", "OUT")
    after = _forge(nsys)
    assert after["vm3"] == after["sentinel"]  # forged: 0 delivered, as without the tap
    assert after["vm2"] == []
    assert after["mon"] == after["sentinel"]  # only the genuine frame is copied
    _drop_flow(nsys, tf)


def _neutron_port_delete(nsys: NeutronSystem, port_id: str) -> None:
    r = nsys.neutron.delete(f"/v2.0/ports/{port_id}")
    assert r.status_code == 204, r.text


def test_port_deleted_in_neutron_takes_its_tap_resources(nsys: NeutronSystem) -> None:
    """vmx's port is a tap service's destination and a tap flow's source: deleted in Neutron,
    both resources are being deleted when Neutron answers, then gone; no taas flow names it."""
    lab = nsys.lab
    vmx = lab.vm("vmx")
    ts = nsys.create("tap_services", {"name": "x", "port_id": vmx.port_id})
    tf_in = nsys.create("tap_flows", {"name": "to-x", "tap_service_id": ts["id"],
                                      "source_port": lab.vm("vm1").port_id, "direction": "OUT"})
    tf_from = _flow(nsys, "vmx", "BOTH")  # vmx as a source, into the monitor's service
    for kind, rid in (("tap_services", ts["id"]), ("tap_flows", tf_in["id"])):
        nsys.wait_status(kind, rid, "ACTIVE")
    services = nsys.taas.get("/v2.0/taas-agents/host2/desired-state",
                             params={"timeout": 0}).json()["desired_state"]["tap_services"]
    tid = next(s["taas_id"] for s in services if s["id"] == ts["id"])
    ofport = vmx.ofport
    assert any(f"in_port={ofport}" in f for f in nsys.taas_flows("host2")["br-int"])
    t0 = time.monotonic()
    _neutron_port_delete(nsys, vmx.port_id)
    answered = time.monotonic() - t0
    # Deleted when Neutron answers (the plugin's port-delete hook), as with the original's
    # in-transaction cascade: gone, or PENDING_DELETE while the agents remove their flows.
    for kind, rid in (("tap_services", ts["id"]), ("tap_flows", tf_in["id"]),
                      ("tap_flows", tf_from)):
        r = nsys.taas.get(f"/v2.0/taas/{kind}/{rid}")
        assert r.status_code == 404 or r.json()[kind[:-1]]["status"] == "PENDING_DELETE", r.text
    for kind, rid in (("tap_services", ts["id"]), ("tap_flows", tf_in["id"]),
                      ("tap_flows", tf_from)):
        nsys.wait_gone(kind, rid, timeout=30)
    gone = time.monotonic() - t0

    def clean() -> bool:
        for host in ("host1", "host2"):
            for br, flows in nsys.taas_flows(host).items():
                text = " ".join(flows)
                if (br == "br-int" and host == "host2" and f"in_port={ofport}," in text) or \
                        re.search(rf"dl_vlan={tid}\b|vlan_vid:{0x1000 + tid}\b|"
                                  rf"->vlan_vid,.*{0x1000 + tid}", text):
                    return False
        return True

    wait_until(clean, 20, 0.2, what="no taas flow names the deleted port or its taas_id")
    print(f"[neutron] port deleted in Neutron: its tap resources deleted when Neutron answered "
          f"({answered:.2f} s), gone (agents done) {gone:.2f} s after the DELETE")


def test_neutron_agent_restart_mirroring_resumes(nsys: NeutronSystem) -> None:
    """neutron-openvswitch-agent on the source host restarted under traffic: its resync deletes
    flows it does not own (ours included); the taas-agent restores them. Prints the copies
    lost and the time to converge."""
    lab = nsys.lab
    tf = _flow(nsys, "vm1", "OUT")

    log = Path(lab.host("host1").run_dir) / "neutron-agent.log"
    before = {br: len(flows) for br, flows in nsys.taas_flows("host1").items()}
    vm3 = lab.vm("vm3")
    with lab.captures({"mon": (None, "icmp"), "vm3": (None, "icmp")}, direction="in") as caps:
        ping = lab.popen("vm1", ["ping", "-n", "-q", "-i", "0.02", "-w", "120", vm3.ip],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            offset = log.stat().st_size
            t_restart = time.monotonic()
            restart_neutron_agent(lab, "host1")

            def cleaned() -> bool:  # its resync deleted every flow it does not own
                with log.open("rb") as f:
                    f.seek(offset)
                    return b"Cleaning stale br-tun flows" in f.read()

            wait_until(cleaned, 120, 0.2, what="neutron agent's stale-flow cleanup")
            t_cleaned = time.monotonic()
            wait_until(lambda: {br: len(fl) for br, fl in nsys.taas_flows("host1").items()}
                       == before, 20, 0.1, what="taas flows restored")
            t_restored = time.monotonic()
            time.sleep(2.0)
        finally:
            ping.terminate()
            ping.wait(5)
    reqs = [f for f in caps["vm3"].frames if f[12:14] == b"\x08\x00" and f[34] == 8]
    copies = [f for f in caps["mon"].frames if f[12:14] == b"\x08\x00" and f[34] == 8]
    seq = lambda f: struct.unpack("!H", f[40:42])[0]  # noqa: E731
    delivered, copied = {seq(f) for f in reqs}, {seq(f) for f in copies}
    lost = sorted(delivered - copied)
    assert copied <= delivered
    # Mirroring resumed: the last second of traffic is fully copied.
    tail = sorted(delivered)[-40:]
    assert set(tail) <= copied, f"not resumed: {len(set(tail) - copied)} of the last 40 lost"
    gap = len(lost) * 0.02
    print(f"[neutron] neutron agent restart on host1: {len(delivered)} echo requests delivered, "
          f"{len(lost)} not copied (~{gap:.2f} s of traffic at 50 pps); its stale-flow cleanup "
          f"{t_cleaned - t_restart:.1f} s after the restart, taas flows back "
          f"{t_restored - t_cleaned:.2f} s after it (polled)")
    _drop_flow(nsys, tf)


def test_monitor_moved_to_another_host_copies_follow(nsys: NeutronSystem) -> None:
    """The tap service's port is re-bound to host2 in Neutron (and re-plugged there, as a live
    migration does): the copies of vm1 (host1) now cross to host2 and arrive once each."""
    lab = nsys.lab
    tf = _flow(nsys, "vm1", "BOTH")
    vm1, vm3 = lab.vm("vm1"), lab.vm("vm3")
    t0 = time.monotonic()
    move_vm(lab, "mon", "host2")
    assert lab.vm("mon").host == "host2"

    def bound() -> bool:
        r = nsys.taas.get(f"/v2.0/ports/{lab.vm('mon').port_id}")
        return r.json()["port"]["binding:host_id"] == "host2"

    wait_until(bound, 30, 0.1, what="taas-server sees the new binding")
    probe = [frame(vm1.mac, vm3.mac, f"moved-{i}") for i in range(3)]
    back = [frame(vm3.mac, vm1.mac, f"moved-back-{i}") for i in range(3)]

    def copied() -> bool:  # the remote path is in place when a probe makes it through
        with lab.capture("mon", direction="in") as cap:
            lab.send_frames("vm1", [frame(vm1.mac, vm3.mac, "moved-warmup")])
            cap.wait_for(1, timeout=2, match=lambda f: f[12:14] == struct.pack("!H", ETH_TEST))
        return bool(probes(cap.frames))

    wait_until(copied, 30, 0.2, what="copies at the moved monitor")
    moved = time.monotonic() - t0
    with lab.captures(["mon", "host3"], direction="in") as caps:
        lab.send_frames("vm1", probe)
        lab.send_frames("vm3", back)
        caps["mon"].wait_for(6, timeout=5, match=lambda f: f[12:14] == struct.pack("!H", ETH_TEST))
    assert sorted(probes(caps["mon"].frames)) == sorted(probe + back)
    assert not [v for v in vxlan_vnis(caps["host3"].frames) if v in TAAS_VNIS]
    print(f"[neutron] monitor moved host1 -> host2: copies arrive there {moved:.1f} s after the "
          "unplug (incl. Neutron re-binding and wiring the port)")
    _drop_flow(nsys, tf)
