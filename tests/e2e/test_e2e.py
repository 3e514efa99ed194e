"""The full system on real OVS with real packets: server + lab + one taas-agent per host.

One scenario in steps (they share one lab and run in this order): mirroring local and remote,
then the faults, each of which must converge; every convergence time is recorded
(`record`) and printed in the summary at the end of the run.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from .conftest import System, count_icmp, icmp, record, wait_until

pytestmark = pytest.mark.ovs

CTX: dict[str, Any] = {}
STATS = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")
DURATION = re.compile(r"duration=([\d.]+)s")


def flows_with_age(system: System, host: str) -> dict[str, float]:
    """taas flow (without counters) -> its age in seconds: a reinstalled flow is young again."""
    out = {}
    for br, lines in system.taas_flows(host, stats=True).items():
        for ln in lines:
            m = DURATION.search(ln)
            out[f"{br} {STATS.sub('', ln)}"] = float(m.group(1)) if m else 0.0
    return out


def desired_taas_ids(system: System, host: str) -> dict[str, int]:
    r = system.admin.get(f"/v2.0/taas-agents/{host}/desired-state", params={"timeout": 0})
    assert r.status_code == 200, r.text
    return {s["id"]: s["taas_id"] for s in r.json()["desired_state"]["tap_services"]}


def test_01_mirroring_local_and_remote(system: System) -> None:
    lab = system.lab
    vm = {v.name: v for v in lab.vms}
    t0 = time.monotonic()
    ts = system.create("tap_services", {"name": "ids", "port_id": vm["mon"].port_id})
    tf1 = system.create("tap_flows", {"name": "local", "source_port": vm["vm1"].port_id,
                                      "tap_service_id": ts["id"], "direction": "BOTH"})
    tf2 = system.create("tap_flows", {"name": "remote", "source_port": vm["vm2"].port_id,
                                      "tap_service_id": ts["id"], "direction": "BOTH"})
    for kind, rid in (("tap_services", ts["id"]), ("tap_flows", tf1["id"]),
                      ("tap_flows", tf2["id"])):
        system.wait_status(kind, rid, "ACTIVE")
    record("create service + 2 flows -> all ACTIVE", time.monotonic() - t0)
    CTX.update(ts=ts["id"], tf1=tf1["id"], tf2=tf2["id"])

    with lab.captures({n: (None, "icmp") for n in ("mon", "vm3", "vm4", "vm5")}) as caps:
        assert lab.ping("vm1", "vm3", 5, interval=0.02)
        assert lab.ping("vm2", "vm3", 5, interval=0.02)
        caps["mon"].wait_for(20, timeout=5)  # every copy is in: only extras could follow
    mon = caps["mon"].frames
    ip = {n: v.ip for n, v in vm.items()}
    # BOTH: requests and replies of the local (vm1) and the remote (vm2) source, once each.
    assert count_icmp(mon, ip["vm1"], ip["vm3"], 8) == 5
    assert count_icmp(mon, ip["vm3"], ip["vm1"], 0) == 5
    assert count_icmp(mon, ip["vm2"], ip["vm3"], 8) == 5
    assert count_icmp(mon, ip["vm3"], ip["vm2"], 0) == 5
    assert len(mon) == 20
    # The destination sees its own traffic exactly once; other tenants' VMs see nothing.
    assert count_icmp(caps["vm3"].frames, ip["vm1"], ip["vm3"], 8) == 5
    assert len(caps["vm3"].frames) == 20
    assert caps["vm4"].frames == [] and caps["vm5"].frames == []


def test_02_agent_restart_rewrites_nothing_and_loses_nothing(system: System) -> None:
    lab = system.lab
    ip = {v.name: v.ip for v in lab.vms}
    before = {h: flows_with_age(system, h) for h in ("host1", "host2")}
    assert all(before.values())
    with lab.capture("mon", bpf="icmp") as cap:
        p1 = system.ping_flood("vm1", "vm3", 300, 0.01)
        p2 = system.ping_flood("vm2", "vm3", 300, 0.01)
        for src in ("vm1", "vm2"):  # both sources are being mirrored before the restart
            cap.wait_for(1, timeout=5, match=lambda f, s=ip[src]: icmp(f) == (s, ip["vm3"], 8))
        t0 = time.monotonic()
        restarted = {}
        for h in ("host1", "host2"):
            code, offset = system.restart_agent(h)
            assert code == 0  # SIGTERM: clean exit
            restarted[h] = offset
        for h, offset in restarted.items():
            wait_until(lambda h=h, o=offset: "synced revision" in system.agent_log(h)[o:], 15,
                       what=f"agent {h} converged")
        record("agent restart (both hosts) -> converged", time.monotonic() - t0)
        sent1, recv1 = system.finish_ping(p1)
        sent2, recv2 = system.finish_ping(p2)
        cap.wait_for(sent1 + recv1 + sent2 + recv2, timeout=10)
    frames = cap.frames
    assert cap.dropped == 0, f"the capture itself dropped {cap.dropped} frames"
    # Every request and reply during the restart was mirrored, exactly once.
    assert (sent1, recv1, sent2, recv2) == (300, 300, 300, 300)
    assert count_icmp(frames, ip["vm1"], ip["vm3"], 8) == sent1
    assert count_icmp(frames, ip["vm3"], ip["vm1"], 0) == recv1
    assert count_icmp(frames, ip["vm2"], ip["vm3"], 8) == sent2
    assert count_icmp(frames, ip["vm3"], ip["vm2"], 0) == recv2
    for h, offset in restarted.items():
        after = flows_with_age(system, h)
        assert set(after) == set(before[h]), f"{h}: flows changed"
        young = [f for f, age in after.items() if age < before[h][f]]
        assert young == [], f"{h}: flows rewritten by the restart: {young}"
        log = system.agent_log(h)[offset:]
        synced = re.findall(r"synced revision \d+ in [\d.]+ ms, \+(\d+) -(\d+) flows", log)
        assert synced and all(a == "0" and r == "0" for a, r in synced), synced
        assert "switch set up" not in log


def test_03_server_restart(system: System) -> None:
    lab = system.lab
    ip = {v.name: v.ip for v in lab.vms}
    with lab.capture("mon", bpf="icmp") as cap:
        p1 = system.ping_flood("vm1", "vm3", 100_000, 0.01)  # until stopped
        cap.wait_for(1, timeout=5)  # mirrored before the server goes down
        t0 = time.monotonic()
        system.server.restart()
        restarted = time.monotonic()
        tf3 = system.create("tap_flows", {"name": "after-restart",
                                          "source_port": lab.vm("vm3").port_id,
                                          "tap_service_id": CTX["ts"], "direction": "OUT"})
        system.wait_status("tap_flows", tf3["id"], "ACTIVE")
        record("taas-server restart -> server up", restarted - t0)
        record("taas-server restart -> new tap flow ACTIVE", time.monotonic() - t0)
        sent, recv = system.finish_ping(p1, interrupt=True)
    # Cleanup first: a flow left behind would add copies to the later steps.
    system.api.delete(f"/v2.0/taas/tap_flows/{tf3['id']}")
    system.wait_status("tap_flows", tf3["id"], None)
    # Mirroring went on while the server was down: every request copied, once. (The ping
    # runs from before the stop until after the new flow is ACTIVE, so it spans the outage;
    # the restart takes ~1 s, hence no more than ~100 pings at 10 ms.)
    assert sent > 50 and recv >= sent - 1
    assert count_icmp(cap.frames, ip["vm1"], ip["vm3"], 8) == sent
    for h in ("host1", "host2"):  # the agents re-registered: alive
        assert "registered host" in system.agent_log(h)


def flow_births(system: System, host: str) -> dict[str, float]:
    """taas flow (without counters) -> the latest time.monotonic() at which it can have been
    installed. OVS counts a flow's duration on CLOCK_MONOTONIC, the clock of time.monotonic();
    2 ms cover the printed duration's rounding."""
    ages = flows_with_age(system, host)
    now = time.monotonic()
    return {f: now - age + 0.002 for f, age in ages.items()}


def test_04_taas_flows_deleted_by_hand_are_restored(system: System) -> None:
    """The agent puts back taas flows deleted behind its back. Checked without racing it: wait
    for the full set, then prove from the flows' ages that each one was installed again after
    the deletion (a deletion that did nothing would leave old flows; no intermediate state of
    the switch is asserted, the agent may already be repairing it)."""
    lab = system.lab
    ip = {v.name: v.ip for v in lab.vms}
    before = {h: system.taas_flows(h) for h in ("host1", "host2")}
    # Every taas flow on every bridge of host1, canary included (the "L2 agent wiped" case).
    t0 = time.monotonic()
    for br in ("br-int", "br-tap", "br-tun"):
        lab.ovs("host1", ["ovs-ofctl", "del-flows", br, system_cookie()])
    wait_until(lambda: system.taas_flows("host1") == before["host1"], 10, 0.05,
               "host1 flows restored")
    record("all taas flows deleted (host1) -> restored", time.monotonic() - t0)
    born = flow_births(system, "host1")
    assert len(born) == sum(map(len, before["host1"].values()))
    old = [f for f, t in born.items() if t < t0]
    assert old == [], f"host1: flows that survived the deletion: {old}"
    # One flow only, the canary left alone: only the periodic diff can see it.
    victim = next(f for f in before["host2"]["br-int"] if "table=250" not in f)
    match = re.sub(r"\s*actions=.*", "", victim.replace("cookie=", "cookie_ignored="))
    match = ",".join(p for p in match.split(",") if not p.startswith("cookie_ignored") and p)
    t0 = time.monotonic()
    lab.ovs("host2", ["ovs-ofctl", "-O", "OpenFlow13", "del-flows", "--strict", "br-int",
                      f"{system_cookie()},{match}"])
    wait_until(lambda: system.taas_flows("host2") == before["host2"], 10, 0.05,
               "host2 flow restored")
    record("one taas flow deleted (host2) -> restored", time.monotonic() - t0)
    # Exactly the deleted flow is new: it was put back, and nothing else was rewritten.
    young = [f for f, t in flow_births(system, "host2").items() if t >= t0]
    # (--no-stats omits table=0, the dump with durations spells it)
    assert [f.replace(" table=0,", "") for f in young] == [f"br-int {victim}"], young
    with lab.capture("mon", bpf="icmp") as cap:
        assert lab.ping("vm1", "vm3", 3, interval=0.02)
        assert lab.ping("vm2", "vm3", 3, interval=0.02)
    assert count_icmp(cap.frames, ip["vm1"], ip["vm3"], 8) == 3
    assert count_icmp(cap.frames, ip["vm2"], ip["vm3"], 8) == 3


def system_cookie() -> str:
    from .conftest import TAAS_COOKIE

    return TAAS_COOKIE


def test_05_ovs_restart(system: System) -> None:
    before = system.taas_flows("host2")
    offset = len(system.agent_log("host2"))
    t0 = time.monotonic()
    system.restart_ovs("host2")
    back = time.monotonic()
    wait_until(lambda: system.taas_flows("host2") == before, 20, 0.1, "host2 flows restored")
    restored = time.monotonic()
    took = system.mirrored_within("vm2", "vm3", 15)
    assert took is not None, "no mirrored packet from vm2 after the OVS restart"
    record("OVS restart (host2): daemons back", back - t0)
    record("OVS restart (host2): OVS back -> taas flows restored", restored - back)
    record("OVS restart (host2): OVS back -> mirroring", time.monotonic() - back)
    # Every taas flow there now was installed after the restart began: OVS really lost them
    # and the agent put them back. (Which of its mechanisms does it is a race between the
    # reset check and the periodic diff, so no log line of either is required.)
    old = [f for f, t in flow_births(system, "host2").items() if t < t0]
    assert old == [], f"host2: flows older than the OVS restart: {old}"
    # The port monitor saw the restart (its IDL reconnects within its 1 s backoff).
    wait_until(lambda: "reconnected" in system.agent_log("host2")[offset:], 5,
               what="OVSDB reconnection logged")


def test_06_port_moved_to_another_host(system: System) -> None:
    lab = system.lab
    ip = {v.name: v.ip for v in lab.vms}
    old_in_port = re.compile(rf"in_port={lab.ofport('host1', lab.vm('vm1').host_interface)}\b")
    assert any(old_in_port.search(f) for f in system.taas_flows("host1")["br-int"])
    t0 = time.monotonic()
    system.move_vm("vm1", "host2")
    took = system.mirrored_within("vm1", "vm3", 15)
    assert took is not None, "no mirrored packet from vm1 after its move to host2"
    record("port moved host1 -> host2 -> mirroring from host2", time.monotonic() - t0)
    system.wait_status("tap_flows", CTX["tf1"], "ACTIVE")
    # host1 dropped the copies of the port it no longer has.
    wait_until(lambda: not any(old_in_port.search(f)
                               for f in system.taas_flows("host1")["br-int"]), 5,
               what="host1's flows of the moved port removed")
    wait_until(lambda: any(p.get("binding:host_id") == "host2" for p in
                           system.admin.get("/v2.0/ports", params={"id": lab.vm("vm1").port_id})
                           .json()["ports"]), 10, what="vm1 bound to host2")
    with lab.captures({"mon": (None, "icmp"), "vm3": (None, "icmp")}) as caps:
        assert lab.ping("vm1", "vm3", 5, interval=0.02)
        caps["mon"].wait_for(10, timeout=5)
    assert count_icmp(caps["mon"].frames, ip["vm1"], ip["vm3"], 8) == 5  # once, not twice
    assert count_icmp(caps["mon"].frames, ip["vm3"], ip["vm1"], 0) == 5
    assert count_icmp(caps["vm3"].frames, ip["vm1"], ip["vm3"], 8) == 5


def test_07_tap_service_delete_waits_for_agents_and_keeps_its_taas_id(system: System) -> None:
    lab = system.lab
    old = CTX["ts"]
    old_id = desired_taas_ids(system, "host1")[old]
    # host2 holds the service's flows (tf2's source) and is down while it is deleted.
    system.lab.stop_agents(["host2"])
    r = system.api.delete(f"/v2.0/taas/tap_services/{old}")
    assert r.status_code == 204, r.text
    assert system.status("tap_services", old) == "PENDING_DELETE"
    # Its taas_id is not handed out while host2 may still have flows with it.
    ts2 = system.create("tap_services", {"name": "ids2", "port_id": lab.vm("mon").port_id})
    new_id = wait_until(lambda: desired_taas_ids(system, "host1").get(ts2["id"]), 5)
    assert new_id != old_id
    # Sentinel: host1's agent has reported the state after the delete, so the server has had
    # every chance to (wrongly) finish the deletion without host2.
    system.wait_caught_up("host1")
    assert system.status("tap_services", old) == "PENDING_DELETE"
    t0 = time.monotonic()
    system.start_agents(["host2"])
    system.wait_status("tap_services", old, None, timeout=20)
    record("service delete: agent back -> gone", time.monotonic() - t0)
    for h in ("host1", "host2"):
        text = " ".join(ln for lines in system.taas_flows(h).values() for ln in lines)
        assert f"dl_vlan={old_id}," not in text and f"vlan_vid:{old_id}" not in text
    # A delete with every agent up: PENDING_DELETE until they confirm, then gone.
    t0 = time.monotonic()
    system.wait_status("tap_services", ts2["id"], "ACTIVE")
    assert system.api.delete(f"/v2.0/taas/tap_services/{ts2['id']}").status_code == 204
    system.wait_status("tap_services", ts2["id"], None)
    record("service delete (agents up) -> gone", time.monotonic() - t0)
