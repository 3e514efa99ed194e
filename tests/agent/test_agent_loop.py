"""The agent's loop with a fake driver and a fake taas-server (real HTTP, real long-poll)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from taas.agent.agent import Agent, AgentConfig
from taas.agent.client import ServerClient
from taas.agent.ports import LocalPort
from taas.common.desired_state import DesiredState, PortFacts, TapFlowState, TapServiceState

from .conftest import FakeDriver, FakeServer, wait_for

HOST = "hv1"
P1 = LocalPort("port-src", 5, 1, "fa:16:3e:00:00:01", "tap-src")
P2 = LocalPort("port-mon", 6, 1, "fa:16:3e:00:00:02", "tap-mon")


def state(rev: int = 0, flows: int = 1, taas_id: int = 3901) -> DesiredState:
    svc = TapServiceState("ts-1", "proj", P2.port_id, taas_id, 16_000_000 + taas_id, HOST,
                          "172.31.9.1")
    tfs = tuple(TapFlowState(f"tf-{i}", "proj", "ts-1", P1.port_id, "BOTH", None)
                for i in range(flows))
    ports = {p.port_id: PortFacts(p.port_id, "net-1", p.mac, 100, HOST) for p in (P1, P2)}
    return DesiredState(HOST, rev, (svc,), tfs, (), ports)


def make_agent(server: FakeServer, driver: FakeDriver, **cfg: float) -> Agent:
    config = AgentConfig(host=HOST, tunnel_ip="172.31.9.1", poll_timeout=5,
                         report_interval=cfg.pop("report_interval", 0.5),
                         resync_interval=cfg.pop("resync_interval", 0.3),
                         reset_check_interval=cfg.pop("reset_check_interval", 0.2),
                         min_backoff=0.05, max_backoff=0.3, server_max_backoff=0.3, **cfg)  # type: ignore[arg-type]
    return Agent(config, driver, ServerClient(server.url, server.token, HOST, timeout=2))


@pytest.fixture
def running(fake_server: FakeServer, fake_driver: FakeDriver) -> Iterator[Agent]:
    agent = make_agent(fake_server, fake_driver)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def settled(agent: Agent) -> None:
    """Sentinel: two converge rounds have completed since now (so one started after now)."""
    n = agent.stats.rounds
    wait_for(lambda: agent.stats.rounds >= n + 2)


def statuses(server: FakeServer) -> dict[str, str]:
    r = server.last_report(HOST)
    return {s.id: s.status for s in r.resources} if r else {}


def test_registers_reports_ports_syncs_and_reports_status(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taas.agent")
    fake_server.set_state(state())
    wait_for(lambda: fake_server.heartbeats)
    assert fake_server.heartbeats[0] == (HOST, "172.31.9.1")
    wait_for(lambda: running._desired is not None)
    settled(running)  # the converge thread has looked since the state arrived
    assert fake_driver.calls == []  # no port copy yet: the switch is not touched

    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
    assert {p["port_id"] for p in fake_server.ports[HOST]} == {"port-src", "port-mon"}
    assert fake_server.ports[HOST][0] == {"port_id": "port-mon", "ofport": 6, "local_vlan": 1,
                                          "mac": "fa:16:3e:00:00:02", "name": "tap-mon"}
    report = fake_server.last_report(HOST)
    assert report is not None and report.taas_ids == (3901,)
    assert report.revision == fake_server.revision
    assert fake_driver.flows == {("tap_service", "ts-1"), ("tap_flow", "tf-0")}
    assert fake_driver.setups >= 1
    assert any("synced revision" in r.message and "+2 -0 flows" in r.message
               for r in caplog.records)


def test_new_desired_state_is_applied_promptly(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    fake_server.set_state(state(flows=1))
    wait_for(lambda: ("tap_flow", "tf-0") in fake_driver.flows)
    for n in (2, 3, 1):
        rev = fake_server.set_state(state(flows=n))
        wait_for(lambda rev=rev: fake_driver.calls and fake_driver.calls[-1][0] == rev,
                 interval=0.002)
        assert len([f for f in fake_driver.flows if f[0] == "tap_flow"]) == n
    # promptness (a change is acted on at once, no timer): tests/agent/test_schedule.py
    wait_for(lambda: len(statuses(fake_server)) == 2)


def test_port_changes_are_reported_and_synced(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    fake_server.set_state(state())
    running.set_ports({P2.port_id: P2})
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE"})
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
    wait_for(lambda: len(fake_server.ports[HOST]) == 2)
    running.set_ports({P2.port_id: P2})  # the source VM left this host
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE"})
    wait_for(lambda: [p["port_id"] for p in fake_server.ports[HOST]] == ["port-mon"])


def test_server_outage_keeps_the_switch_and_recovers(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    fake_server.set_state(state())
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
    flows = set(fake_driver.flows)

    fake_server.stop()
    errors = running.stats.server_errors
    # several failed watches and heartbeats, and periodic resyncs since
    wait_for(lambda: running.stats.server_errors >= errors + 3)
    settled(running)
    assert fake_driver.flows == flows
    assert all(removed == 0 for _, _, _, removed in fake_driver.calls)
    assert running.stats.server_errors > 0
    before = len(fake_server.heartbeats)

    fake_server.start()  # a restarted server on the same port
    fake_server.set_state(state(flows=2))
    wait_for(lambda: ("tap_flow", "tf-1") in fake_driver.flows, timeout=3)
    wait_for(lambda: len(fake_server.heartbeats) > before)
    wait_for(lambda: statuses(fake_server).get("tf-1") == "ACTIVE")


def test_no_server_at_start_never_touches_the_switch(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    fake_server.stop()
    fake_driver.flows = {("tap_flow", "left-from-before")}
    agent = make_agent(fake_server, fake_driver)
    agent.start()
    try:
        agent.set_ports({P1.port_id: P1})
        wait_for(lambda: agent.stats.server_errors >= 2)  # the watch failed, more than once
        settled(agent)  # and the converge thread has looked at the ports since
        assert fake_driver.calls == []
        assert fake_driver.flows == {("tap_flow", "left-from-before")}
    finally:
        agent.stop()


def test_restart_with_nothing_changed_rewrites_nothing(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    fake_server.set_state(state())
    first = make_agent(fake_server, fake_driver)
    first.start()
    first.set_ports({P1.port_id: P1, P2.port_id: P2})
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
    first.stop()
    assert fake_driver.flows  # stop leaves the flows in place
    n = len(fake_driver.calls)
    setups = fake_driver.setups

    second = make_agent(fake_server, fake_driver)
    second.start()
    try:
        settled(second)  # it runs without ports first
        second.set_ports({P1.port_id: P1, P2.port_id: P2})
        wait_for(lambda: len(fake_driver.calls) > n)
        settled(second)
        assert all(a == 0 and r == 0 for _, _, a, r in fake_driver.calls[n:])
        assert all(len(p) == 2 for p in fake_driver.sync_ports[n:])  # never with no ports
        assert fake_driver.setups == setups  # canary intact: setup would rewrite static flows
    finally:
        second.stop()


def test_switch_reset_is_detected_and_repaired(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    fake_server.set_state(state())
    wait_for(lambda: len(fake_driver.flows) == 2)
    setups = fake_driver.setups
    fake_driver.wipe()
    wait_for(lambda: len(fake_driver.flows) == 2, timeout=2)
    assert fake_driver.setups > setups
    assert running.stats.resets >= 1


def test_flows_deleted_by_someone_else_are_restored_by_the_periodic_diff(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    fake_server.set_state(state())
    wait_for(lambda: len(fake_driver.flows) == 2)
    with fake_driver.lock:
        fake_driver.flows.discard(("tap_flow", "tf-0"))  # canary intact: only a diff sees it
    wait_for(lambda: ("tap_flow", "tf-0") in fake_driver.flows, timeout=2)
    assert fake_driver.calls[-1][2] == 1  # one flow added back


def test_errors_never_kill_the_loop_and_are_reported(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1, P2.port_id: P2})
    fake_driver.fail = 5
    fake_server.set_state(state())
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ERROR", "tf-0": "ERROR"}, timeout=3)
    report = fake_server.last_report(HOST)
    assert report is not None and 3901 in report.taas_ids
    assert "connection refused" in (report.resources[0].reason or "")
    wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"}, timeout=5)
    assert running.stats.sync_errors == 5


def test_reports_and_ports_are_resent_at_each_heartbeat(
        fake_server: FakeServer, fake_driver: FakeDriver, running: Agent) -> None:
    running.set_ports({P1.port_id: P1})
    fake_server.set_state(state())
    wait_for(lambda: fake_server.last_report(HOST))
    n_reports, n_ports = len(fake_server.reports), fake_server.port_calls
    # report_interval 0.5 s: the heartbeats carry the report and the ports again
    wait_for(lambda: len(fake_server.heartbeats) >= 3 and len(fake_server.reports) > n_reports
             and fake_server.port_calls > n_ports)


def test_revision_bump_without_change_for_this_host_skips_the_switch(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    agent = make_agent(fake_server, fake_driver, resync_interval=0, reset_check_interval=60)
    agent.start()
    try:
        agent.set_ports({P1.port_id: P1, P2.port_id: P2})
        fake_server.set_state(state())
        wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
        n = len(fake_driver.calls)
        rev = fake_server.set_state(state())  # another host's change: same content, new rev
        # the report of rev is the sentinel: a sync would have come before it, in its round
        wait_for(lambda: fake_server.last_report(HOST).revision == rev)
        assert fake_driver.calls[n:] == []
        assert statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"}
        fake_server.set_state(state(flows=2))  # a real change is still applied
        wait_for(lambda: statuses(fake_server).get("tf-1") == "ACTIVE")
    finally:
        agent.stop()


def test_full_verification_runs_on_its_own_slower_cadence(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    """Periodic syncs use the cheap check; every verify_interval one dumps every bridge."""
    fake_server.set_state(state())
    agent = make_agent(fake_server, fake_driver, resync_interval=0.1, verify_interval=0.6)
    agent.start()
    try:
        agent.set_ports({P1.port_id: P1, P2.port_id: P2})
        wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
        syncs0, verifies0 = len(fake_driver.calls), fake_driver.verifies
        wait_for(lambda: fake_driver.verifies >= verifies0 + 2)
        periodic = len(fake_driver.calls) - syncs0
        verifies = fake_driver.verifies - verifies0
    finally:
        agent.stop()
    # never on every periodic sync (the exact cadence: tests/agent/test_schedule.py)
    assert periodic > verifies, (periodic, verifies)


def test_change_driven_syncs_never_verify(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    fake_server.set_state(state())
    agent = make_agent(fake_server, fake_driver, resync_interval=0, verify_interval=0.05)
    agent.start()
    try:
        agent.set_ports({P1.port_id: P1, P2.port_id: P2})
        wait_for(lambda: statuses(fake_server) == {"ts-1": "ACTIVE", "tf-0": "ACTIVE"})
        fake_server.set_state(state(flows=2))
        wait_for(lambda: "tf-1" in statuses(fake_server))
    finally:
        agent.stop()
    assert fake_driver.verifies == 0


def test_error_report_after_restart_claims_the_taas_ids_still_on_the_switch(
        fake_server: FakeServer, fake_driver: FakeDriver) -> None:
    """A fresh agent whose syncs fail still claims old flows' ids, so none is reused early."""
    fake_driver.held = (3950,)
    fake_driver.fail = 100
    fake_server.set_state(state())
    agent = make_agent(fake_server, fake_driver)
    agent.start()
    try:
        agent.set_ports({P1.port_id: P1, P2.port_id: P2})
        wait_for(lambda: statuses(fake_server) == {"ts-1": "ERROR", "tf-0": "ERROR"}, timeout=5)
        report = fake_server.last_report(HOST)
    finally:
        agent.stop()
    assert report is not None and set(report.taas_ids) == {3901, 3950}
