"""The agent's converge and uplink timing as pure step functions: an explicit clock, no sleeps."""

from __future__ import annotations

import pytest

from taas.agent.schedule import ConvergeInputs, ConvergeSchedule, UplinkSchedule, backoff


def converge(now: float = 0.0, **kw: float) -> ConvergeSchedule:
    cfg = dict(reset_check_interval=1.0, resync_interval=2.0, verify_interval=60.0,
               debounce=0.05, min_backoff=0.2, max_backoff=1.0, error_report_after=3)
    cfg.update(kw)
    return ConvergeSchedule(now, **cfg)  # type: ignore[arg-type]


def inputs(ports: int | None = 1, desired: int | None = 1, reset: bool = False
           ) -> ConvergeInputs:
    return ConvergeInputs(ports, desired, reset)


def run_round(s: ConvergeSchedule, inp: ConvergeInputs, now: float, synced: bool = True):
    assert s.wait(inp, now) is None
    plan = s.plan(inp, now)
    s.succeeded(plan, now, synced and bool(plan.reason))
    return plan


def test_start_up_checks_the_switch_once_ports_are_known_then_syncs() -> None:
    s = converge()
    assert s.wait(inputs(ports=None, desired=None, reset=True), 0.0) == 1.0  # nothing yet
    # ports but no desired state: the switch is checked, never synced
    plan = run_round(s, inputs(desired=None, reset=True), 0.1)
    assert plan.reset and not plan.can_sync
    assert s.wait(inputs(desired=None), 0.2) is not None
    # the desired state arrives: act at once (no timer involved)
    plan = run_round(s, inputs(desired=1), 0.3)
    assert (plan.reason, plan.can_sync, plan.reset, plan.verify) == ("desired state", True,
                                                                     False, False)
    assert s.wait(inputs(desired=1), 0.3) > 0  # done: wait


def test_a_change_is_acted_on_immediately_and_ports_are_debounced() -> None:
    s = converge()
    run_round(s, inputs(), 0.0)
    assert s.wait(inputs(desired=2), 0.5) is None  # a new desired state: now
    assert run_round(s, inputs(desired=2), 0.5).reason == "desired state"
    # a port change waits for the burst to settle, then syncs once with the latest ports
    assert s.wait(inputs(ports=2, desired=2), 0.6) == pytest.approx(0.05)
    assert s.wait(inputs(ports=3, desired=2), 0.63) == pytest.approx(0.02)  # not extended
    assert s.wait(inputs(ports=3, desired=2), 0.65) is None
    assert run_round(s, inputs(ports=3, desired=2), 0.65).reason == "ports"


def test_periodic_diff_and_canary_check_cadence() -> None:
    s = converge(reset_check_interval=1.0, resync_interval=2.0, verify_interval=5.0)
    run_round(s, inputs(), 0.0)  # syncs: the next periodic diff is due 2 s later
    assert s.wait(inputs(), 0.5) == 0.5  # canary check due at 1.0
    plan = run_round(s, inputs(), 1.0)
    assert (plan.check_reset, plan.reason) == (True, "")
    plan = run_round(s, inputs(), 2.0)
    assert (plan.check_reset, plan.reason, plan.verify) == (True, "periodic", False)
    # verification rides on a periodic diff once verify_interval has passed, not on each
    verifies = [t for t in (4.0, 6.0, 8.0, 10.0, 12.0)
                if run_round(s, inputs(), float(t)).verify]
    assert verifies == [6.0, 12.0]


def test_change_driven_syncs_never_verify() -> None:
    s = converge(resync_interval=0.0, verify_interval=0.05)
    for n, t in enumerate((0.0, 1.0, 2.0), start=1):
        plan = run_round(s, inputs(desired=n), t)
        assert plan.reason == "desired state" and not plan.verify


def test_no_periodic_sync_when_disabled() -> None:
    s = converge(resync_interval=0.0, reset_check_interval=60.0)
    run_round(s, inputs(), 0.0)
    assert s.wait(inputs(), 59.0) == 1.0  # capped, looks again
    assert run_round(s, inputs(), 60.0).reason == ""


def test_failures_back_off_and_report_after_three() -> None:
    s = converge(min_backoff=0.2, max_backoff=1.0)
    assert s.wait(inputs(), 0.0) is None
    s.plan(inputs(), 0.0)
    assert s.failed(0.0, jitter=1.0) == (0.2, False)
    assert s.wait(inputs(), 0.1) == pytest.approx(0.1)  # not before the backoff's end
    assert s.wait(inputs(), 0.2) is None
    s.plan(inputs(), 0.2)
    assert s.failed(0.2, jitter=1.0) == (0.4, False)
    s.plan(inputs(), 0.6)
    assert s.failed(0.6, jitter=1.0) == (0.8, True)
    s.plan(inputs(), 1.4)
    assert s.failed(1.4, jitter=1.0) == (1.0, True)  # capped
    plan = run_round(s, inputs(), 2.4)
    assert plan.reason == "desired state" and s.failures == 0


def test_backoff_jitter_stays_within_bounds() -> None:
    assert all(0.8 <= backoff(1, 1.0, 5.0) <= 1.0 for _ in range(100))


def uplink(**kw: float) -> UplinkSchedule:
    cfg = dict(report_interval=10.0, debounce=0.05, min_backoff=0.2, max_backoff=1.0)
    cfg.update(kw)
    return UplinkSchedule(**cfg)  # type: ignore[arg-type]


def test_uplink_registers_first_then_heartbeats_on_its_period() -> None:
    u = uplink()
    assert u.wait(0.0, None, False) is None
    plan = u.plan(0.0, False, False, have_ports=False, have_report=False)
    assert (plan.heartbeat, plan.send_ports, plan.send_report) == (True, False, False)
    assert u.succeeded(plan, 0.0) is True  # registered
    assert u.wait(5.0, None, False) == 1.0
    assert u.wait(10.0, None, False) is None
    plan = u.plan(10.0, False, False, have_ports=True, have_report=True)
    assert (plan.heartbeat, plan.send_ports, plan.send_report) == (True, True, True)
    assert u.succeeded(plan, 10.0) is False


def test_uplink_debounces_ports_and_sends_reports_at_once() -> None:
    u = uplink()
    u.succeeded(u.plan(0.0, False, False, False, False), 0.0)
    assert u.wait(1.0, 1.0, False) == pytest.approx(0.05)
    assert u.wait(1.05, 1.0, False) is None
    plan = u.plan(1.05, True, False, have_ports=True, have_report=True)
    assert (plan.heartbeat, plan.send_ports, plan.send_report) == (False, True, False)
    assert u.wait(2.0, None, True) is None
    plan = u.plan(2.0, False, True, have_ports=True, have_report=True)
    assert (plan.heartbeat, plan.send_ports, plan.send_report) == (False, False, True)


def test_uplink_failed_heartbeat_is_retried_after_the_backoff() -> None:
    u = uplink()
    plan = u.plan(0.0, False, False, False, False)
    assert u.failed(plan, 0.0, jitter=1.0) == 0.2
    assert not u.registered
    plan = u.plan(0.2, False, False, True, False)
    assert plan.heartbeat and plan.send_ports  # unregistered: heartbeat and ports again
    assert u.failed(plan, 0.2, jitter=1.0) == 0.4
    assert u.succeeded(u.plan(0.6, False, False, True, False), 0.6) is True
    assert u.failures == 0 and u.next_heartbeat == 10.6
