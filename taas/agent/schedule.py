"""When the agent's converge and uplink threads act, as pure step functions of an explicit clock.

No threads, no sleeps, no clock reads: each method takes ``now`` (``time.monotonic()`` in the
agent, any number in tests) and the inputs the thread saw under its lock, and says how long to
wait or what to do. The threads in ``agent.py`` only carry the decisions out, so every timing
rule (periodic diff, full verification, canary checks, debounce, backoff, heartbeats) is
tested without sleeping (tests/agent/test_schedule.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

INF = float("inf")
MAX_WAIT = 1.0  # a thread never sleeps longer than this without looking again


def backoff(failures: int, lo: float, hi: float, jitter: float | None = None) -> float:
    """Exponential, capped, with jitter (0.8-1.0) so that many agents do not retry in lockstep."""
    j = random.uniform(0.8, 1.0) if jitter is None else jitter
    return min(hi, lo * (2 ** max(0, failures - 1))) * j


@dataclass(frozen=True)
class ConvergeInputs:
    """What the converge thread sees of the shared state (under the agent's lock)."""

    ports_version: int | None  # None until the first copy of the ports arrived
    desired_version: int | None  # None until a desired state arrived
    reset_pending: bool  # start-up, or OVSDB reconnected: check the switch first


@dataclass(frozen=True)
class ConvergePlan:
    """One round of the converge thread."""

    reset: bool  # check the canary, set the switch up if it is gone (start-up, reconnection)
    check_reset: bool  # the periodic canary check is due
    reason: str  # why sync: "desired state", "ports", "periodic", or "" (only if reset)
    verify: bool  # a periodic sync that dumps and diffs every bridge
    can_sync: bool  # a desired state and a copy of the ports are held
    desired_version: int | None
    ports_version: int | None


class ConvergeSchedule:
    """The converge thread's timing: reset checks, periodic diff and verification, debounce
    of port changes, backoff after a failure."""

    def __init__(self, now: float, *, reset_check_interval: float, resync_interval: float,
                 verify_interval: float, debounce: float, min_backoff: float,
                 max_backoff: float, error_report_after: int) -> None:
        self.reset_check_interval = reset_check_interval
        self.resync_interval = resync_interval
        self.verify_interval = verify_interval
        self.debounce = debounce
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.error_report_after = error_report_after
        self.done_desired: int | None = -1
        self.done_ports: int | None = -1
        self.failures = 0
        self.retry_at = 0.0
        self.next_reset_check = now + reset_check_interval
        self.next_resync = now + resync_interval if resync_interval > 0 else INF
        self.next_verify = now + verify_interval if verify_interval > 0 else INF
        self._settle_until: float | None = None

    def _changed(self, inp: ConvergeInputs) -> bool:
        return (inp.ports_version is not None and inp.desired_version is not None
                and (inp.desired_version != self.done_desired
                     or inp.ports_version != self.done_ports))

    def wait(self, inp: ConvergeInputs, now: float) -> float | None:
        """None: act now (``plan``); else how long to wait (or until the inputs change)."""
        due = min(self.next_reset_check, self.next_resync)
        ready = inp.ports_version is not None
        if now < self.retry_at:
            return min(self.retry_at - now, MAX_WAIT)  # the retry the log line announced
        if not (self._changed(inp) or (ready and inp.reset_pending) or now >= due):
            return max(0.0, min(due - now, MAX_WAIT))
        if inp.ports_version != self.done_ports and self.done_ports != -1 and self.debounce > 0:
            # Let a burst of port changes settle into one sync.
            if self._settle_until is None:
                self._settle_until = now + self.debounce
            if now < self._settle_until:
                return self._settle_until - now
        return None

    def plan(self, inp: ConvergeInputs, now: float) -> ConvergePlan:
        """What this round does; advances the periodic timers that it consumes."""
        self._settle_until = None
        periodic = now >= self.next_resync
        if periodic:
            self.next_resync = now + self.resync_interval
        verify = periodic and now >= self.next_verify
        if verify:
            self.next_verify = now + self.verify_interval
        reset = inp.reset_pending and inp.ports_version is not None
        check_reset = not reset and now >= self.next_reset_check
        if check_reset:
            self.next_reset_check = now + self.reset_check_interval
        reason = ("desired state" if inp.desired_version != self.done_desired
                  else "ports" if inp.ports_version != self.done_ports
                  else "periodic" if periodic else "")
        return ConvergePlan(reset, check_reset, reason, verify and reason == "periodic",
                            inp.ports_version is not None and inp.desired_version is not None,
                            inp.desired_version, inp.ports_version)

    def succeeded(self, plan: ConvergePlan, now: float, synced: bool) -> None:
        """The round went through; ``synced``: it ran a sync (a full diff: the next can wait)."""
        self.failures = 0
        self.retry_at = 0.0
        if plan.can_sync:
            self.done_desired, self.done_ports = plan.desired_version, plan.ports_version
        if synced and self.resync_interval > 0:
            self.next_resync = now + self.resync_interval

    def failed(self, now: float, jitter: float | None = None) -> tuple[float, bool]:
        """The round raised: (seconds until the retry, whether to report resources ERROR)."""
        self.failures += 1
        delay = backoff(self.failures, self.min_backoff, self.max_backoff, jitter)
        self.retry_at = now + delay
        return delay, self.failures >= self.error_report_after


@dataclass(frozen=True)
class UplinkPlan:
    heartbeat: bool
    send_ports: bool
    send_report: bool


class UplinkSchedule:
    """The uplink thread's timing: heartbeats, debounced port reports, reports, backoff."""

    def __init__(self, *, report_interval: float, debounce: float, min_backoff: float,
                 max_backoff: float) -> None:
        self.report_interval = report_interval
        self.debounce = debounce
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.next_heartbeat = 0.0
        self.registered = False
        self.failures = 0

    def wait(self, now: float, ports_dirty_since: float | None, report_dirty: bool
             ) -> float | None:
        """None: act now (``plan``); else how long to wait (or until the inputs change)."""
        ports_due = ports_dirty_since is not None and now >= ports_dirty_since + self.debounce
        if now >= self.next_heartbeat or ports_due or report_dirty:
            return None
        wake = self.next_heartbeat
        if ports_dirty_since is not None:
            wake = min(wake, ports_dirty_since + self.debounce)
        return max(0.0, min(wake - now, MAX_WAIT))

    def plan(self, now: float, ports_dirty: bool, report_dirty: bool, have_ports: bool,
             have_report: bool) -> UplinkPlan:
        heartbeat = now >= self.next_heartbeat or not self.registered
        # Never report an empty port set that was not read.
        send_ports = (heartbeat or ports_dirty) and have_ports
        send_report = have_report and (report_dirty or heartbeat)
        return UplinkPlan(heartbeat, send_ports, send_report)

    def succeeded(self, plan: UplinkPlan, now: float) -> bool:
        """The calls went through; True when this registered the host (first heartbeat)."""
        first = plan.heartbeat and not self.registered
        if plan.heartbeat:
            self.registered = True
            self.next_heartbeat = now + self.report_interval
        self.failures = 0
        return first

    def failed(self, plan: UplinkPlan, now: float, jitter: float | None = None) -> float:
        """A call failed: seconds until the retry (a failed heartbeat is retried then)."""
        self.failures += 1
        delay = backoff(self.failures, self.min_backoff, self.max_backoff, jitter)
        if plan.heartbeat:
            self.registered = False
            self.next_heartbeat = min(self.next_heartbeat, now + delay)
        return delay
