"""Features end to end: HTTP API -> taas-server -> both agents -> real OVS -> captured frames.

One system for the module (server with a taas_id range of two ids, so that reuse is
observable; 2-host lab; one agent per host); after every test every tap resource is deleted
through the API and the switches are back to their static taas flows.

Frames are UDP with a unique payload, injected in the VM namespaces and counted (exact bytes)
at every VM: what a VM must receive = what it received without any mirroring (the baseline,
taken once) + one copy per tap flow that matches the frame, if the VM is that flow's monitor.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .conftest import System, record, start_system, wait_until

pytestmark = pytest.mark.ovs

ID_RANGE = (3900, 3902)  # [start, end): two taas_ids
HOSTS = ("host1", "host2")
BCAST = "ff:ff:ff:ff:ff:ff"
NET_A = ("mon", "vm1", "vm2", "vm3")
NET_B = ("vm4", "vm5")
TAGS = (None, 15, 25, 30, 40)


@dataclass(frozen=True)
class Send:
    src: str
    dst: str  # a VM name or BCAST
    tag: int | None
    data: bytes


@dataclass(frozen=True)
class Flow:
    """A tap flow as the model sees it: its source VM, its service's monitor VM."""
    source: str
    monitor: str
    direction: str
    vlan_filter: str | None = None


class Env:
    """The module's system, its baseline and the API calls of the tests."""

    def __init__(self, system: System) -> None:
        self.sys = system
        self.lab = system.lab
        self.b_api = system.server.client("b-member")
        self.clients = {"a": system.api, "b": self.b_api, "admin": system.admin}
        self.static = {h: system.taas_flows(h) for h in HOSTS}
        self.sends = self._plan()
        self.prime()
        self.baseline = self._observe(self.sends)
        assert all(self.baseline[v] for v in (*NET_A, *NET_B)), "tenant traffic did not work"
        tagged = {s.data for s in self.sends if s.tag is not None}
        assert not any(f in tagged for c in self.baseline.values() for f in c)

    # -- API ----------------------------------------------------------------------------------
    def post(self, kind: str, body: dict[str, Any], who: str = "a") -> httpx.Response:
        return self.clients[who].post(f"/v2.0/taas/{kind}", json={kind[:-1]: body})

    def create(self, kind: str, body: dict[str, Any], who: str = "a") -> dict[str, Any]:
        r = self.post(kind, body, who)
        assert r.status_code == 201, r.text
        return r.json()[kind[:-1]]

    def service(self, monitor: str, who: str = "a") -> dict[str, Any]:
        return self.create("tap_services", {"name": f"svc-{monitor}",
                                            "port_id": self.lab.vm(monitor).port_id}, who)

    def flow(self, service: dict[str, Any], source: str, direction: str,
             vlan_filter: str | None = None, who: str = "a") -> dict[str, Any]:
        body = {"name": f"{source}-{direction}", "tap_service_id": service["id"],
                "source_port": self.lab.vm(source).port_id, "direction": direction}
        if vlan_filter is not None:
            body["vlan_filter"] = vlan_filter
        return self.create("tap_flows", body, who)

    def delete(self, kind: str, rid: str, who: str = "a") -> None:
        r = self.clients[who].delete(f"/v2.0/taas/{kind}/{rid}")
        assert r.status_code == 204, r.text

    def all_active(self, *items: tuple[str, dict[str, Any]], timeout: float = 15) -> float:
        t0 = time.monotonic()
        for kind, row in items:
            self.sys.wait_status(kind, row["id"], "ACTIVE", timeout)
        return time.monotonic() - t0

    def admin_status(self, kind: str, rid: str) -> str | None:
        r = self.sys.admin.get(f"/v2.0/taas/{kind}/{rid}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()[kind[:-1]]["status"]

    def taas_id(self, host: str, service_id: str) -> int | None:
        r = self.sys.admin.get(f"/v2.0/taas-agents/{host}/desired-state", params={"timeout": 0})
        assert r.status_code == 200, r.text
        return {s["id"]: s["taas_id"]
                for s in r.json()["desired_state"]["tap_services"]}.get(service_id)

    def flows_text(self, host: str) -> str:
        return "\n".join(ln for lines in self.sys.taas_flows(host).values() for ln in lines)

    def tap_ports(self, host: str) -> list[str]:
        return sorted(self.lab.ovs(host, ["ovs-vsctl", "list-ports", "br-tap"]).split())

    # -- traffic ------------------------------------------------------------------------------
    def frame(self, src: str, dst: str, tag: int | None = None, marker: str = "") -> Send:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Dot1Q, Ether
        from scapy.packet import Raw

        s = self.lab.vm(src)
        mac, ip = (BCAST, "255.255.255.255") if dst == BCAST else (self.lab.vm(dst).mac,
                                                                   self.lab.vm(dst).ip)
        p = Ether(src=s.mac, dst=mac)
        if tag is not None:
            p = p / Dot1Q(vlan=tag)
        text = f"TAAS-E2E {marker or ''}{src}>{dst} tag={tag}".encode().ljust(64, b".")
        p = p / IP(src=s.ip, dst=ip, ttl=9) / UDP(sport=40000, dport=9999) / Raw(text)
        return Send(src, dst, tag, bytes(p))

    def _plan(self) -> list[Send]:
        """Every VM to every other VM of its network and to broadcast; vm1 also tagged."""
        out = []
        for net in (NET_A, NET_B):
            for s in net:
                for d in [x for x in net if x != s] + [BCAST]:
                    out.append(self.frame(s, d))
        for tag in TAGS[1:]:
            for d in ("vm2", BCAST):
                out.append(self.frame("vm1", d, tag))
        return out

    def prime(self) -> None:
        """Let every switch learn every VM's MAC: unicast is not flooded (stable baselines)."""
        for net in (NET_A, NET_B):
            for a, b in zip(net, net[1:] + net[:1], strict=True):
                self.lab.ping(a, b, count=1)

    def _observe(self, sends: list[Send], expect: dict[str, int] | None = None
                 ) -> dict[str, Counter[bytes]]:
        """Send frames from the VMs; the frames of `sends` each VM received, counted. With
        `expect` (VM -> number of those frames it must get), wait for them before the capture
        ends: then only extras can still be on their way, which the capture's settle catches."""
        wanted = {s.data for s in sends}
        with self.lab.captures(list(NET_A + NET_B), direction="in") as caps:
            by_vm: dict[str, list[bytes]] = {}
            for s in sends:
                by_vm.setdefault(s.src, []).append(s.data)
            for vm, frames in by_vm.items():
                self.lab.send_frames(vm, frames)
            for vm, n in (expect or {}).items():
                caps[vm].wait_for(n, timeout=5, match=lambda f: f in wanted)
        return {vm: Counter(f for f in c.frames if f in wanted) for vm, c in caps.items()}

    def copies(self, flows: list[Flow], s: Send) -> Counter[str]:
        """Monitor VM -> number of copies of one frame: one per tap flow that matches it."""
        out: Counter[str] = Counter()
        net = self.lab.vm(s.src).network_id
        for f in flows:
            if f.vlan_filter is not None:
                if s.tag is None or not any(_in_range(s.tag, r)
                                            for r in f.vlan_filter.split(",")):
                    continue
            src = self.lab.vm(f.source)
            hit_out = f.source == s.src and f.direction in ("OUT", "BOTH")
            # A VLAN-tagged frame from an access port is dropped by NORMAL: delivered to no
            # one (the baseline shows it), so there is nothing to copy as IN.
            delivered = (src.network_id == net and f.source != s.src and s.tag is None
                         and (s.dst == BCAST or self.lab.vm(s.dst).mac == src.mac))
            if hit_out or (delivered and f.direction in ("IN", "BOTH")):
                out[f.monitor] += 1
        return out

    def check(self, flows: list[Flow], sends: list[Send] | None = None
              ) -> dict[str, Counter[bytes]]:
        """Send the frames; every VM gets its baseline plus exactly the modelled copies."""
        sends = self.sends if sends is None else sends
        want: dict[str, Counter[bytes]] = {vm: Counter() for vm in self.baseline}
        for s in sends:
            copies = self.copies(flows, s)
            for vm, w in want.items():
                w[s.data] += self.baseline[vm][s.data] + copies[vm]
        want = {vm: +w for vm, w in want.items()}
        self.prime()
        got = self._observe(sends, {vm: w.total() for vm, w in want.items()})
        for vm, have in got.items():
            assert have == want[vm], (f"{vm}: extra {_names(have - want[vm], sends)}, "
                                      f"missing {_names(want[vm] - have, sends)}")
        return got

    # -- reset --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Agents up on both hosts, every port registered, no tap resource, static flows."""
        running = {a["host"] for a in self.lab.state.get("agents", [])}
        for h in HOSTS:
            if h not in running:
                self.sys.start_agents([h])
        adm = self.sys.admin
        for v in self.lab.vms:  # a test may have deleted a port: register it again
            if adm.get(f"/v2.0/ports/{v.port_id}").status_code == 404:
                r = adm.post("/v2.0/ports", json={"port": {
                    "id": v.port_id, "name": v.name, "network_id": v.network_id,
                    "project_id": v.project_id, "mac_address": v.mac,
                    "binding:host_id": v.host, "device_owner": "compute:nova",
                    "fixed_ips": [{"ip_address": v.ip}]}})
                assert r.status_code == 201, r.text
        for kind in ("tap_mirrors", "tap_flows", "tap_services"):
            for row in adm.get(f"/v2.0/taas/{kind}").json()[kind]:
                adm.delete(f"/v2.0/taas/{kind}/{row['id']}")
        wait_until(lambda: not any(adm.get(f"/v2.0/taas/{k}").json()[k] for k in
                                   ("tap_mirrors", "tap_flows", "tap_services")),
                   30, 0.1, "every tap resource gone")
        for h in HOSTS:
            wait_until(lambda h=h: self.sys.taas_flows(h) == self.static[h], 15, 0.1,
                       f"{h}: only the static taas flows")
            wait_until(lambda h=h: self.tap_ports(h) == ["patch-tap-int", "patch-tap-tun"],
                       10, 0.1, f"{h}: br-tap without mirror ports")


def _in_range(tag: int, r: str) -> bool:
    lo, _, hi = r.partition("-")
    return int(lo) <= tag <= int(hi or lo)


def _names(c: Counter[bytes], sends: list[Send]) -> dict[str, int]:
    name = {s.data: f"{s.src}>{s.dst}/{s.tag}" for s in sends}
    return {name.get(f, f.hex()[:24]): n for f, n in c.items()}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with start_system(vlan_range_start=ID_RANGE[0], vlan_range_end=ID_RANGE[1]) as system:
        e = Env(system)
        try:
            yield e
        finally:
            e.b_api.close()


@pytest.fixture
def fx(env: Env) -> Iterator[Env]:
    env.reset()
    try:
        yield env
    finally:
        env.reset()


# --- 1. tap mirrors ------------------------------------------------------------------------------

def _decode_tunnelled(frames: list[bytes]) -> list[tuple[str, int, int, bytes]]:
    """(kind, key or ERSPAN session, ERSPAN version or 0, inner frame) of GRE packets."""
    from scapy.contrib.erspan import ERSPAN_II
    from scapy.layers.inet import GRE
    from scapy.layers.l2 import Ether

    out = []
    for f in frames:
        p = Ether(f)
        if GRE not in p:
            continue
        gre = p[GRE]
        if gre.proto == 0x6558:
            out.append(("gre", gre.key, 0, bytes(gre.payload)))
        elif gre.proto == 0x88BE and ERSPAN_II in p:
            e = p[ERSPAN_II]
            out.append(("erspan", e.session_id, e.ver, bytes(e.payload)))
    return out


def _tcpdump_v(frames: list[bytes]) -> str:
    """What `tcpdump -nv` says about the frames (a standard tool must decode them)."""
    from scapy.utils import wrpcap

    with tempfile.TemporaryDirectory(prefix="taas-e2e-") as d:
        path = f"{d}/col.pcap"
        wrpcap(path, frames, linktype=1)
        return subprocess.run(["tcpdump", "-nv", "-r", path], capture_output=True, text=True,
                              check=True).stdout


def test_tap_mirror_gre_and_erspan_to_the_collector(fx: Env) -> None:
    lab = fx.lab
    col = lab.collector("col1")
    t0 = time.monotonic()
    m1 = fx.create("tap_mirrors", {"name": "m-gre", "port_id": lab.vm("vm1").port_id,
                                   "directions": {"IN": 101, "OUT": 102},
                                   "remote_ip": col.ip, "mirror_type": "gre"})
    m2 = fx.create("tap_mirrors", {"name": "m-erspan", "port_id": lab.vm("vm2").port_id,
                                   "directions": {"IN": 201, "OUT": 202},
                                   "remote_ip": col.ip, "mirror_type": "erspanv1"})
    fx.all_active(("tap_mirrors", m1), ("tap_mirrors", m2))
    record("features: 2 tap mirrors -> ACTIVE", time.monotonic() - t0)
    # One tunnel port per direction (its own key), on the host of the mirrored port.
    assert len(fx.tap_ports("host1")) == 4 and len(fx.tap_ports("host2")) == 4
    sends = [fx.frame("mon", "vm1"), fx.frame("vm1", "vm3"), fx.frame("vm3", "vm2"),
             fx.frame("vm2", "vm3"), fx.frame("vm3", BCAST), fx.frame("vm4", "vm5")]
    by = {f"{s.src}>{s.dst}": s.data for s in sends}

    # Where the frames are delivered: a copy leaves the switch in the same pass as the
    # delivery, so once they are in, only copies still crossing the underlay can follow.
    delivered = {"vm1": {by["mon>vm1"], by[f"vm3>{BCAST}"]},
                 "vm2": {by["vm3>vm2"], by[f"vm3>{BCAST}"]},
                 "vm3": {by["vm1>vm3"], by["vm2>vm3"]}, "vm5": {by["vm4>vm5"]}}

    def at_collector() -> Counter[tuple[str, int, int, bytes]]:
        fx.prime()
        targets = {"col1": (None, "ip proto 47"), **{vm: (None, "udp") for vm in delivered}}
        with lab.captures(targets, direction="in") as caps:
            for s in sends:
                lab.send_frames(s.src, [s.data])
            for vm, datas in delivered.items():
                assert len(caps[vm].wait_for(len(datas), 5, lambda f, d=datas: f in d)) == \
                    len(datas), f"{vm} did not get its frames"
        frames.extend(caps["col1"].frames)
        return Counter(d for d in _decode_tunnelled(caps["col1"].frames) if d[3] in by.values())

    frames: list[bytes] = []
    got = at_collector()
    assert got == Counter({
        ("gre", 101, 0, by["mon>vm1"]): 1,  # IN of vm1
        ("gre", 102, 0, by["vm1>vm3"]): 1,  # OUT of vm1
        ("gre", 101, 0, by[f"vm3>{BCAST}"]): 1,  # broadcast delivered to vm1
        ("erspan", 201, 1, by["vm3>vm2"]): 1,  # IN of vm2, ERSPAN version 1 (type II)
        ("erspan", 202, 1, by["vm2>vm3"]): 1,  # OUT of vm2
        ("erspan", 201, 1, by[f"vm3>{BCAST}"]): 1,
    }), got
    # tcpdump decodes the GRE copies (keys and inner packets); it names ERSPAN only by its GRE
    # protocol type (ERSPAN type II = "v1": GRE with a sequence number and no key).
    text = _tcpdump_v(frames)
    assert set(re.findall(r"Flags \[key present\], key=(0x[0-9a-f]+)", text)) == {"0x65", "0x66"}
    vm1, vm3 = lab.vm("vm1").ip, lab.vm("vm3").ip
    assert re.search(rf"key=0x66, .*\n.*\n\s*{re.escape(vm1)}\.40000 > {re.escape(vm3)}\.9999: UDP",
                     text), text
    assert re.search(r"Flags \[sequence# present\], seq \d+, .*\n\s*gre-proto-0x88be", text), text
    for m in (m1, m2):
        fx.delete("tap_mirrors", m["id"])
    for m in (m1, m2):
        fx.sys.wait_status("tap_mirrors", m["id"], None)
    for h in HOSTS:
        wait_until(lambda h=h: fx.tap_ports(h) == ["patch-tap-int", "patch-tap-tun"], 10,
                   what=f"{h}: mirror ports removed")
    assert at_collector() == Counter()


# --- 2. vlan_filter ---------------------------------------------------------------------------

def test_vlan_filter_on_tagged_frames(fx: Env) -> None:
    s1, s3 = fx.service("mon"), fx.service("vm3")
    f1 = fx.flow(s1, "vm1", "OUT", "10-20,30")
    f2 = fx.flow(s3, "vm1", "BOTH", "25,40-50")
    fx.all_active(("tap_services", s1), ("tap_services", s3), ("tap_flows", f1),
                  ("tap_flows", f2))
    assert fx.sys.get("tap_flows", f1["id"])["vlan_filter"] == "10-20,30"  # type: ignore[index]
    tagged = [s for s in fx.sends if s.src == "vm1"]
    got = fx.check([Flow("vm1", "mon", "OUT", "10-20,30"), Flow("vm1", "vm3", "BOTH", "25,40-50")],
                   tagged)
    # Spelled out: mon got the tags 15 and 30 only, vm3 the tags 25 and 40 only.
    mon_tags = {s.tag for s in tagged if got["mon"][s.data] > fx.baseline["mon"][s.data]}
    assert mon_tags == {15, 30}
    vm3_extra = {s.tag for s in tagged if got["vm3"][s.data] > fx.baseline["vm3"][s.data]}
    assert vm3_extra == {25, 40}


# --- 3. two tenants -------------------------------------------------------------------------

def test_two_tenants_isolated(fx: Env) -> None:
    sa = fx.service("mon")
    fa1, fa2 = fx.flow(sa, "vm1", "BOTH"), fx.flow(sa, "vm2", "BOTH")
    sb = fx.service("vm5", who="b")
    fb = fx.flow(sb, "vm4", "BOTH", who="b")
    fx.all_active(("tap_services", sa), ("tap_flows", fa1), ("tap_flows", fa2))
    for row, kind in ((sb, "tap_services"), (fb, "tap_flows")):
        wait_until(lambda r=row, k=kind: fx.admin_status(k, r["id"]) == "ACTIVE", 15,
                   what=f"project-b {kind} ACTIVE")
    # project-a does not see project-b's service, and the reverse.
    assert fx.sys.api.get(f"/v2.0/taas/tap_services/{sb['id']}").status_code == 404
    assert fx.b_api.get(f"/v2.0/taas/tap_services/{sa['id']}").status_code == 404
    fx.check([Flow("vm1", "mon", "BOTH"), Flow("vm2", "mon", "BOTH"),
              Flow("vm4", "vm5", "BOTH")])
    # project-b may not mirror project-a's VM into its service: 403, and no switch changes.
    before = {h: fx.sys.taas_flows(h) for h in HOSTS}
    r = fx.post("tap_flows", {"name": "steal", "tap_service_id": sb["id"],
                              "source_port": fx.lab.vm("vm1").port_id, "direction": "BOTH"},
                who="b")
    assert r.status_code == 403, r.text
    assert r.json()["NeutronError"]["type"] == "PortDoesNotBelongToTenant"
    listed = fx.b_api.get("/v2.0/taas/tap_flows").json()["tap_flows"]
    assert [f["id"] for f in listed] == [fb["id"]]
    fx.sys.wait_caught_up(*HOSTS)  # the agents have acted on whatever the server has now
    assert {h: fx.sys.taas_flows(h) for h in HOSTS} == before


# --- 4. status aggregation ----------------------------------------------------------------------

def test_status_active_only_when_both_hosts_report(fx: Env) -> None:
    lab = fx.lab
    lab.stop_agents(["host1"])  # the monitor's host
    ts = fx.service("mon")
    tf = fx.flow(ts, "vm2", "BOTH")  # source on host2
    vm2_mac = lab.vm("vm2").mac
    wait_until(lambda: vm2_mac in fx.flows_text("host2"), 10,
               what="host2 installed the source's flows")
    # Sentinel: host2 has reported the state with the new flow; the statuses still wait
    # for host1.
    fx.sys.wait_caught_up("host2")
    assert fx.sys.status("tap_flows", tf["id"]) == "DOWN"
    assert fx.sys.status("tap_services", ts["id"]) == "DOWN"
    # host1 has no path for the service yet: nothing reaches the monitor.
    vm2_sends = [s for s in fx.sends if s.src == "vm2" or s.dst == "vm2"]
    fx.check([], vm2_sends)
    t0 = time.monotonic()
    fx.sys.start_agents(["host1"])
    fx.all_active(("tap_flows", tf), ("tap_services", ts), timeout=20)
    record("features: host1 agent started -> remote flow ACTIVE", time.monotonic() - t0)
    fx.check([Flow("vm2", "mon", "BOTH")], vm2_sends)


# --- 5. port delete cascade ---------------------------------------------------------------------

def test_port_delete_removes_its_tap_flows(fx: Env) -> None:
    lab = fx.lab
    s1, s3 = fx.service("mon"), fx.service("vm3")
    keep = [fx.flow(s1, "vm1", "OUT"), fx.flow(s3, "vm1", "IN")]
    fx.all_active(("tap_services", s1), ("tap_services", s3),
                  *(("tap_flows", f) for f in keep))
    without = {h: fx.sys.taas_flows(h) for h in HOSTS}
    gone = [fx.flow(s1, "vm2", "BOTH"), fx.flow(s3, "vm2", "OUT")]
    fx.all_active(*(("tap_flows", f) for f in gone))
    assert {h: fx.sys.taas_flows(h) for h in HOSTS} != without
    kept = [Flow("vm1", "mon", "OUT"), Flow("vm1", "vm3", "IN")]
    fx.check([*kept, Flow("vm2", "mon", "BOTH"), Flow("vm2", "vm3", "OUT")])
    t0 = time.monotonic()
    r = fx.sys.admin.delete(f"/v2.0/ports/{lab.vm('vm2').port_id}")
    assert r.status_code == 204, r.text
    for f in gone:
        fx.sys.wait_status("tap_flows", f["id"], None)
    for h in HOSTS:
        wait_until(lambda h=h: fx.sys.taas_flows(h) == without[h], 10, 0.05,
                   f"{h}: the deleted port's flows removed")
    record("features: port delete -> its tap flows gone, switch clean", time.monotonic() - t0)
    for f in keep:
        assert fx.sys.status("tap_flows", f["id"]) == "ACTIVE"
    flows = fx.sys.api.get("/v2.0/taas/tap_flows").json()["tap_flows"]
    assert sorted(f["id"] for f in flows) == sorted(f["id"] for f in keep)
    fx.check(kept)


# --- 6. taas_id reuse ---------------------------------------------------------------------------

def test_taas_id_held_until_the_old_flows_are_gone(fx: Env) -> None:
    lab = fx.lab
    old = fx.service("mon")  # host1
    fx.all_active(("tap_services", old), ("tap_flows", fx.flow(old, "vm2", "OUT")))
    old_id = fx.taas_id("host1", old["id"])
    assert old_id == ID_RANGE[0]
    lab.stop_agents(["host1"])
    fx.delete("tap_services", old["id"])
    assert fx.sys.status("tap_services", old["id"]) == "PENDING_DELETE"
    # host1 still has the old service's flows (its agent is down): the id is held.
    assert f"dl_vlan={old_id}" in fx.flows_text("host1")
    new = fx.service("vm3")  # host2
    new_id = fx.taas_id("host2", new["id"])
    assert new_id == ID_RANGE[1] - 1 and new_id != old_id
    # The range has two ids: one in use, one held by host1's stale flows.
    r = fx.post("tap_services", {"name": "third", "port_id": lab.vm("vm5").port_id}, who="b")
    assert r.status_code == 409, r.text
    assert r.json()["NeutronError"]["type"] == "TapServiceLimitReached"
    t0 = time.monotonic()
    fx.sys.start_agents(["host1"])
    fx.sys.wait_status("tap_services", old["id"], None, timeout=20)
    record("features: agent back -> old service gone, taas_id free", time.monotonic() - t0)
    assert f"dl_vlan={old_id}" not in fx.flows_text("host1")
    third = fx.service("vm5", who="b")
    assert fx.taas_id("host2", third["id"]) == old_id  # reused once no host holds it
    nf, tf = fx.flow(new, "vm2", "OUT"), fx.flow(third, "vm4", "OUT", who="b")
    fx.all_active(("tap_services", new), ("tap_flows", nf))
    for row, kind in ((third, "tap_services"), (tf, "tap_flows")):
        wait_until(lambda r=row, k=kind: fx.admin_status(k, r["id"]) == "ACTIVE", 15,
                   what=f"{kind} ACTIVE")
    # The reused id carries project-b's copies to vm5 only: nothing leaks to the old monitor.
    fx.check([Flow("vm2", "vm3", "OUT"), Flow("vm4", "vm5", "OUT")],
             [s for s in fx.sends if s.src in ("vm2", "vm4") and s.tag is None])


# --- 7. many to one, one to many ----------------------------------------------------------------

def test_many_sources_and_services_each_copy_once(fx: Env) -> None:
    s1, s2 = fx.service("mon"), fx.service("vm3")
    rows = {
        Flow("vm1", "mon", "BOTH"): fx.flow(s1, "vm1", "BOTH"),
        Flow("vm2", "mon", "OUT"): fx.flow(s1, "vm2", "OUT"),
        Flow("vm1", "vm3", "OUT"): fx.flow(s2, "vm1", "OUT"),
        Flow("vm2", "vm3", "IN"): fx.flow(s2, "vm2", "IN"),
    }
    fx.all_active(("tap_services", s1), ("tap_services", s2),
                  *(("tap_flows", r) for r in rows.values()))
    untagged = [s for s in fx.sends if s.tag is None]
    before = fx.check(list(rows), untagged)
    victim = Flow("vm1", "mon", "BOTH")
    fx.delete("tap_flows", rows[victim]["id"])
    fx.sys.wait_status("tap_flows", rows[victim]["id"], None)
    rest = [f for f in rows if f != victim]
    for f in rest:
        assert fx.sys.status("tap_flows", rows[f]["id"]) == "ACTIVE"
    after = fx.check(rest, untagged)
    # What the other flows deliver did not change: vm3's (service 2) copies, and mon's copies
    # of vm2's unicast to others than vm1 (vm2's OUT flow; vm1's IN played no part in them).
    assert after["vm3"] == before["vm3"]
    vm2_frames = {s.data for s in untagged if s.src == "vm2" and s.dst not in ("vm1", BCAST)}
    assert ({f: n for f, n in after["mon"].items() if f in vm2_frames}
            == {f: n for f, n in before["mon"].items() if f in vm2_frames})
    by = {s.dst: s.data for s in untagged if s.src == "vm2"}
    assert (after["mon"][by["mon"]], after["mon"][by["vm3"]]) == (2, 1)  # itself + copy; copy


# --- 8. truncation and rate limits (issue 10) ---------------------------------------------------

def _taas_meters(fx: Env, host: str, bridge: str) -> dict[int, str]:
    out = fx.lab.ovs(host, ["ovs-ofctl", "-O", "OpenFlow14", "dump-meters", bridge])
    return {int(m.group(1)): m.group(2) for m in re.finditer(
        r"meter=(\d+) (\w+)[^\n]*\n\s*type=drop rate=(?:\d+)", out)
        if 0x7A00_0000 <= int(m.group(1)) <= 0x7AFF_FFFF}


def test_snaplen_and_limits_from_the_api_to_the_switches(fx: Env) -> None:
    s1 = fx.create("tap_services", {"port_id": fx.lab.vm("mon").port_id, "max_pps": 500})
    local = fx.create("tap_flows", {"tap_service_id": s1["id"], "direction": "OUT",
                                    "source_port": fx.lab.vm("vm1").port_id, "snaplen": 96})
    remote = fx.create("tap_flows", {"tap_service_id": s1["id"], "direction": "OUT",
                                     "source_port": fx.lab.vm("vm2").port_id, "snaplen": 96,
                                     "max_pps": 200, "max_kbps": 800})
    fx.all_active(("tap_services", s1), ("tap_flows", local), ("tap_flows", remote))
    # The meters: the service's on the monitor's host (br-int), the flow's on its source's.
    assert list(_taas_meters(fx, "host1", "br-int").values()) == ["pktps"]
    assert sorted(_taas_meters(fx, "host2", "br-tap").values()) == ["kbps", "pktps"]
    sends = [fx.frame("vm1", "vm3", marker="trunc "), fx.frame("vm2", "vm3", marker="trunc ")]
    assert all(len(s.data) > 96 for s in sends)

    def at_monitor() -> Counter[bytes]:
        wanted = {s.data[:60] for s in sends}
        with fx.lab.capture("mon", direction="in") as cap:
            for s in sends:
                fx.lab.send_frames(s.src, [s.data])
            cap.wait_for(2, timeout=5, match=lambda f: f[:60] in wanted)
        return Counter(f for f in cap.frames if f[:60] in wanted)

    fx.prime()
    assert at_monitor() == Counter(s.data[:96] for s in sends)
    # A PUT: the switches follow (whole frames again; the flow's meters gone with its limits).
    r = fx.clients["a"].put(f"/v2.0/taas/tap_flows/{remote['id']}", json={"tap_flow": {
        "snaplen": None, "max_pps": None, "max_kbps": None}})
    assert r.status_code == 200, r.text
    fx.sys.wait_caught_up(*HOSTS)
    assert _taas_meters(fx, "host2", "br-tap") == {}
    assert at_monitor() == Counter([sends[0].data[:96], sends[1].data])
    fx.delete("tap_services", s1["id"])
    fx.sys.wait_status("tap_services", s1["id"], None)
    fx.sys.wait_caught_up(*HOSTS)
    assert _taas_meters(fx, "host1", "br-int") == {}
