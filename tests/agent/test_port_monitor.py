"""The port monitor against a real ovsdb-server: ports coming, going and changing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from taas.agent.port_monitor import PortMonitor
from taas.agent.ports import LocalPort, PortMap

from .conftest import OvsdbServer, wait_for


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, PortMap, bool]] = []

    def __call__(self, ports: PortMap, reconnected: bool) -> None:
        with self.lock:
            self.events.append((time.monotonic(), ports, reconnected))

    def latest(self) -> PortMap | None:
        with self.lock:
            return self.events[-1][1] if self.events else None


@pytest.fixture
def monitored(ovsdb: OvsdbServer) -> Iterator[tuple[OvsdbServer, PortMonitor, Recorder]]:
    ovsdb.vsctl("add-br", "br-int", "--", "add-br", "br-other")
    rec = Recorder()
    mon = PortMonitor(ovsdb.remote, "br-int", rec, max_backoff_ms=200)
    mon.start()
    try:
        assert mon.wait_ready(5)
        yield ovsdb, mon, rec
    finally:
        mon.stop()


def add_vm_port(db: OvsdbServer, name: str, port_id: str, mac: str, tag: int,
                bridge: str = "br-int", ofport: int | None = None) -> None:
    args = ["add-port", bridge, name, f"tag={tag}", "--", "set", "interface", name,
            f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={mac}"]
    if ofport is not None:
        args.append(f"ofport={ofport}")
    db.vsctl(*args)


def test_ports_added_changed_removed_are_seen(monitored) -> None:
    db, mon, rec = monitored
    assert rec.latest() == {}

    add_vm_port(db, "tap-a", "port-a", "FA:16:3E:00:00:0A", 5, ofport=7)
    wait_for(lambda: "port-a" in (rec.latest() or {}))
    assert rec.latest() == {"port-a": LocalPort("port-a", 7, 5, "fa:16:3e:00:00:0a", "tap-a")}

    db.vsctl("set", "port", "tap-a", "tag=9")
    wait_for(lambda: rec.latest()["port-a"].local_vlan == 9)

    db.vsctl("del-port", "br-int", "tap-a")
    wait_for(lambda: rec.latest() == {})
    assert mon.ports() == {}


def test_port_is_reported_only_once_vswitchd_gave_it_an_ofport(monitored) -> None:
    db, mon, rec = monitored
    add_vm_port(db, "tap-b", "port-b", "fa:16:3e:00:00:0b", 3)  # ofport not assigned yet
    db.vsctl("add-port", "br-int", "tap-c", "--", "set", "interface", "tap-c",
             "external_ids:iface-id=port-c", "external_ids:attached-mac=fa:16:3e:00:00:0c",
             "ofport=-1")  # vswitchd failed to attach it
    # sentinel: a port added after them is seen, so their rows have been processed too
    add_vm_port(db, "tap-s", "port-s", "fa:16:3e:00:00:5e", 3, ofport=13)
    wait_for(lambda: "port-s" in (rec.latest() or {}))
    assert "port-b" not in mon.ports() and "port-c" not in mon.ports()

    db.vsctl("set", "interface", "tap-b", "ofport=12")  # what vswitchd does a moment later
    wait_for(lambda: "port-b" in (rec.latest() or {}))
    assert mon.ports()["port-b"].ofport == 12
    assert "port-c" not in mon.ports()


def test_patch_tunnel_and_other_bridge_ports_are_not_vm_ports(monitored) -> None:
    db, mon, rec = monitored
    db.vsctl("add-port", "br-int", "patch-int-tap", "--", "set", "interface", "patch-int-tap",
             "type=patch", "options:peer=patch-tap-int", "external_ids:iface-id=bogus-1",
             "ofport=2")
    db.vsctl("add-port", "br-int", "vx1", "--", "set", "interface", "vx1", "type=vxlan",
             "options:remote_ip=10.0.0.1", "external_ids:iface-id=bogus-2", "ofport=3")
    db.vsctl("add-port", "br-int", "plain", "--", "set", "interface", "plain", "ofport=4")
    add_vm_port(db, "tap-x", "port-x", "fa:16:3e:00:00:01", 4, bridge="br-other", ofport=5)
    add_vm_port(db, "tap-d", "port-d", "fa:16:3e:00:00:0d", 4, ofport=6)
    wait_for(lambda: "port-d" in (rec.latest() or {}))  # added last: a sentinel
    assert set(mon.ports()) == {"port-d"}


def test_ovsdb_restart_is_reported_as_reconnection(monitored) -> None:
    db, mon, rec = monitored
    add_vm_port(db, "tap-e", "port-e", "fa:16:3e:00:00:0e", 2, ofport=8)
    wait_for(lambda: "port-e" in (rec.latest() or {}))
    db.stop()
    db.start()
    wait_for(lambda: any(r for _, _, r in rec.events), timeout=3.0)
    _, ports, _ = [e for e in rec.events if e[2]][0]
    assert set(ports) == {"port-e"}  # a complete copy, never an empty set in between
    # (the reconnection's copy is the sentinel: every event up to it, the outage included)
    assert all(set(p) == {"port-e"} for _, p, _ in rec.events[1:])
    assert mon.ports() == {"port-e": LocalPort("port-e", 8, 2, "fa:16:3e:00:00:0e", "tap-e")}


def test_agent_rechecks_the_switch_when_ovsdb_comes_back(ovsdb: OvsdbServer) -> None:
    """The monitor's reconnection reaches the agent: canary check, then a sync."""
    from taas.agent.agent import Agent, AgentConfig
    from taas.agent.client import ServerClient
    from taas.common.desired_state import DesiredState

    from .conftest import FakeDriver

    ovsdb.vsctl("add-br", "br-int")
    add_vm_port(ovsdb, "tap-f", "port-f", "fa:16:3e:00:00:0f", 2, ofport=9)
    driver = FakeDriver()
    agent = Agent(AgentConfig(host="h", tunnel_ip="172.31.9.9", resync_interval=0,
                              reset_check_interval=60),
                  driver, ServerClient("http://127.0.0.1:9", "t", "h"),  # no server needed
                  monitor_factory=lambda cb: PortMonitor(ovsdb.remote, "br-int", cb,
                                                         max_backoff_ms=200))
    agent._desired = DesiredState("h", 1)  # as if the watch had delivered it
    agent._desired_version = 1
    agent.start()
    try:
        wait_for(lambda: driver.calls, timeout=3)
        assert driver.setups == 1 and driver.sync_ports[-1].keys() == {"port-f"}
        n = len(driver.calls)
        ovsdb.stop()
        driver.wipe()  # what an OVS restart does to the flows
        ovsdb.start()
        wait_for(lambda: len(driver.calls) > n and driver.setups == 2, timeout=3)
        assert agent.stats.resets >= 1
    finally:
        agent.stop()
