"""Counters end to end: real agents read their flows' statistics, the server accumulates them,
and `statistics` (and /metrics) equal the copies tcpdump saw at the monitor, exactly; the
totals survive an agent that is stopped while traffic flows (before + after, never lower)
and an OVS restart on the source host (its flows are re-installed: counters restart at 0)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import System, _exit_code, start_system, wait_until

pytestmark = pytest.mark.ovs


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system(counters_interval=1.0) as sysm:
        yield sysm


def frames(system: System, src: str, marker: str, n: int) -> list[bytes]:
    """Frames to vm3's MAC but not its IP: vm3 drops them silently (no reply, no ARP), so the
    copies are exactly these."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    s, d = system.lab.vm(src), system.lab.vm("vm3")
    return [bytes(Ether(src=s.mac, dst=d.mac) / IP(src=s.ip, dst="192.0.2.9", ttl=9)
                  / UDP(sport=4000, dport=9999)
                  / Raw(f"TAAS-CT {marker}{i}".encode().ljust(60 + i, b".")))
            for i in range(n)]


def learn_vm3(system: System) -> None:
    """Every switch learns vm3's MAC (else frames to it are flooded to the monitor too): a
    broadcast from vm3 that nobody answers (a ping would make vm1 and vm2 send ARP probes
    seconds later, which their tap flows would count)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    v3 = system.lab.vm("vm3")
    system.lab.send_frames("vm3", [bytes(Ether(src=v3.mac, dst="ff:ff:ff:ff:ff:ff")
                                         / IP(src=v3.ip, dst="192.0.2.9") / UDP(dport=9))])


def send(system: System, sends: dict[str, list[bytes]]) -> Counter[bytes]:
    """Inject the frames; the copies of them the monitor captured."""
    wanted = {f for fs in sends.values() for f in fs}
    with system.lab.capture("mon", direction="in") as cap:
        for vm, fs in sends.items():
            system.lab.send_frames(vm, fs)
        cap.wait_for(len(wanted), 5, lambda f: f in wanted)
    return Counter(f for f in cap.frames if f in wanted)


def stats(system: System, kind: str, rid: str) -> dict[str, Any]:
    row = system.get(f"{kind}s", rid)
    assert row is not None
    return row["statistics"]  # type: ignore[no-any-return]


def wait_counts(system: System, want: dict[tuple[str, str, str], int]) -> None:
    def now() -> dict[tuple[str, str, str], int]:
        return {(k, r, c): stats(system, k, r)[c] for k, r, c in want}

    wait_until(lambda: now() == want, 20, 0.2, what=f"statistics {want}")


def test_counters_equal_the_monitors_capture_and_survive_restarts(system: System) -> None:
    vm = {v.name: v for v in system.lab.vms}
    learn_vm3(system)
    ts = system.create("tap_services", {"port_id": vm["mon"].port_id})
    local = system.create("tap_flows", {"source_port": vm["vm1"].port_id,
                                        "tap_service_id": ts["id"], "direction": "OUT"})
    remote = system.create("tap_flows", {"source_port": vm["vm2"].port_id,
                                         "tap_service_id": ts["id"], "direction": "OUT"})
    for kind, r in (("tap_services", ts), ("tap_flows", local), ("tap_flows", remote)):
        system.wait_status(kind, r["id"], "ACTIVE")

    seen = send(system, {"vm1": frames(system, "vm1", "a", 10),
                         "vm2": frames(system, "vm2", "b", 8)})
    assert sum(seen.values()) == 18
    wait_counts(system, {("tap_flow", local["id"], "mirrored_packets"): 10,
                         ("tap_flow", remote["id"], "mirrored_packets"): 8,
                         ("tap_service", ts["id"], "delivered_packets"): 18,
                         ("tap_service", ts["id"], "delivered_bytes"):
                             sum(len(f) * n for f, n in seen.items())})
    flow = stats(system, "tap_flow", local["id"])
    assert flow["filtered_packets"] == flow["dropped_packets"] == 0 and flow["updated_at"]
    assert flow["mirrored_bytes"] == sum(len(f) for f in frames(system, "vm1", "a", 10))

    # /metrics: parses, and equals the GETs.
    r = system.admin.get("/metrics")
    assert r.status_code == 200, r.text
    got = {(s.name, s.labels.get("resource_id")): s.value
           for fam in text_string_to_metric_families(r.text) for s in fam.samples}
    assert got[("taas_mirrored_packets_total", local["id"])] == 10
    assert got[("taas_delivered_bytes_total", ts["id"])] == stats(
        system, "tap_service", ts["id"])["delivered_bytes"]
    assert got[("taas_agent_sync_duration_seconds_count", None)] >= 1
    assert system.api.get("/metrics").status_code == 403  # a project member

    # host1's agent stops; traffic goes on (the flows stay); it starts again: before + after.
    pid = system.agent("host1")["pid"]
    os.kill(pid, 15)
    wait_until(lambda: _exit_code(pid), 10, 0.02, "agent exit")
    system.lab.state["agents"] = [a for a in system.lab.state["agents"] if a["host"] != "host1"]
    system.lab.save()
    assert sum(send(system, {"vm1": frames(system, "vm1", "c", 5)}).values()) == 5
    system.start_agents(["host1"])
    wait_counts(system, {("tap_flow", local["id"], "mirrored_packets"): 15,
                         ("tap_service", ts["id"], "delivered_packets"): 23})

    # OVS restarts on host2: its flows are re-installed, their counters start at 0 again.
    system.restart_ovs("host2")
    system.wait_caught_up("host1", "host2")
    learn_vm3(system)
    wait_until(lambda: sum(send(system, {"vm2": frames(system, "vm2", "d", 4)}).values()) == 4,
               30, 0.5, what="remote copies after the OVS restart")
    # (copies of earlier attempts while the flows came back count too: at least 4 more)
    wait_until(lambda: stats(system, "tap_flow", remote["id"])["mirrored_packets"] >= 12
               and stats(system, "tap_service", ts["id"])["delivered_packets"]
               == 15 + stats(system, "tap_flow", remote["id"])["mirrored_packets"],
               20, 0.2, what="counters after the OVS restart")
