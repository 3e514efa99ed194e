"""The agent's control loop: ports up, desired state down, the switch converged, status back.

Four threads, each with one job, sharing a little state under one condition variable:

- ``port-monitor`` (port_monitor.PortMonitor): OVSDB monitor updates -> the VM port set;
  an OVSDB reconnection is taken as a possible OVS restart.
- ``watch``: long-polls the host's desired state (``revision=`` the one held); a new state
  replaces the held one. Level-triggered: one answer is enough to converge.
- ``converge``: the only thread that talks to the switch (driver.setup/sync/switch_was_reset).
  Syncs when the desired state or the ports changed, when the switch was reset, and every
  ``resync_interval`` (a diff that finds nothing changes nothing, and repairs flows that
  someone else deleted). Never touches the switch before it holds both a desired state and
  the first copy of the ports: a start-up or a server outage leaves the flows as they are.
- ``uplink``: every call *to* the server: heartbeat (registration), the port set (when it
  changed, debounced, and at each heartbeat), the HostReport after each convergence (latest
  wins). Retries with backoff; nothing it does depends on the server being reachable.

An exception in any iteration is logged and the loop goes on. When each thread acts is decided
by the pure schedules of ``schedule.py`` (explicit clock, tested without sleeps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from taas.agent.client import MAX_BACKOFF, ServerClient, ServerError
from taas.agent.counters import CounterReporter
from taas.agent.port_monitor import PortMonitor
from taas.agent.ports import LocalPort, PortMap
from taas.agent.schedule import (
    ConvergeInputs,
    ConvergePlan,
    ConvergeSchedule,
    UplinkPlan,
    UplinkSchedule,
    backoff,
)
from taas.common.desired_state import DesiredState, HostReport, ResourceStatus

LOG = logging.getLogger(__name__)


class SyncResultLike(Protocol):
    statuses: tuple[ResourceStatus, ...]
    taas_ids: tuple[int, ...]
    added: int
    removed: int


class Driver(Protocol):
    """What the agent needs of taas.agent.ovs.driver.OvsDriver."""

    def setup(self) -> None: ...

    def sync(self, desired: DesiredState, ports: Mapping[str, LocalPort],
             verify: bool = False) -> SyncResultLike: ...

    def switch_was_reset(self) -> bool: ...

    def held_taas_ids(self) -> tuple[int, ...]:
        """The taas_ids the switch's taas flows hold (read back; raises if unreadable)."""
        ...

    def close(self) -> None: ...


@dataclass
class AgentConfig:
    host: str
    tunnel_ip: str
    report_interval: float = 10.0  # heartbeat period (server's agent_down_time is 30 s)
    poll_timeout: float = 55.0  # long-poll wait asked of the server (its maximum is 60 s)
    reset_check_interval: float = 1.0  # how often to look for the canary (OVS restart)
    resync_interval: float = 2.0  # cheap check (flow counts) against the switch; 0 disables
    # A full dump-and-diff of every bridge: also catches a taas flow rewritten in place, which
    # the cheap check cannot see. It costs a dump per bridge, so it runs far less often.
    verify_interval: float = 60.0
    debounce: float = 0.05  # port changes arriving together make one report and one sync
    min_backoff: float = 0.2
    max_backoff: float = 1.0  # switch work: an OVS restart is repaired within about a second
    # Calls to the server back off further: a herd of retries keeps an overloaded server down.
    server_max_backoff: float = MAX_BACKOFF
    error_report_after: int = 3  # consecutive sync failures before resources go ERROR


@dataclass
class AgentStats:
    """Counters for tests, logs and the benchmark."""

    syncs: int = 0
    sync_errors: int = 0
    flows_added: int = 0
    flows_removed: int = 0
    resets: int = 0
    reports_sent: int = 0
    ports_sent: int = 0
    heartbeats: int = 0
    server_errors: int = 0
    last_synced_revision: int | None = None
    last_sync_ms: float = 0.0
    rounds: int = 0  # converge rounds carried out (whatever they did): a sentinel for tests
    history: list[tuple[float, int, int, int]] = field(default_factory=list)


class Agent:
    """One taas agent. ``start()`` runs it in background threads; ``stop()`` ends them."""

    def __init__(
        self,
        config: AgentConfig,
        driver: Driver,
        client: ServerClient,
        monitor_factory: Callable[[Callable[[PortMap, bool], None]], PortMonitor] | None = None,
    ) -> None:
        self.config = config
        self.driver = driver
        self.client = client
        self.stats = AgentStats()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # -- shared state, guarded by _cond --
        self._ports: PortMap | None = None  # None until the first copy of OVSDB arrived
        self._ports_version = 0
        self._desired: DesiredState | None = None
        self._desired_version = 0
        self._desired_received_at = 0.0
        self._reset_pending = True  # the first pass checks the switch (setup if needed)
        self._ports_dirty_since: float | None = None  # uplink: port set not yet sent
        self._report: HostReport | None = None
        self._report_dirty = False
        # -- converge thread's own state --
        self._held_report: HostReport | None = None
        self._synced_content: DesiredState | None = None  # last synced, revision zeroed
        self._monitor_factory = monitor_factory
        self._monitor: PortMonitor | None = None
        self._threads: list[threading.Thread] = []
        # Counters of the flows that count (a driver that has them, i.e. the OVS one).
        self.counters = (CounterReporter(config.host, driver, client)  # type: ignore[arg-type]
                         if hasattr(driver, "counter_slots") else None)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._monitor_factory is not None:
            self._monitor = self._monitor_factory(self._on_ports)
            self._monitor.start()
        loops: list[tuple[str, Callable[[], None]]] = [
            ("watch", self._watch_loop), ("uplink", self._uplink_loop),
            ("converge", self._converge_loop)]
        if self.counters is not None:
            reporter = self.counters
            loops.append(("counters", lambda: reporter.run(self._stop)))
        for name, target in loops:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        LOG.info("agent for host %s started (tunnel ip %s)", self.config.host,
                 self.config.tunnel_ip)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread. Flows stay on the switch: they are the last converged state."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._monitor is not None:
            self._monitor.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.name != "watch":  # a pending long-poll ends with the process
                t.join(max(0.0, deadline - time.monotonic()))
        try:
            self.driver.close()
        except Exception:  # noqa: BLE001
            LOG.exception("driver close failed")
        self.client.close()
        LOG.info("agent stopped; flows left in place")

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- inputs ----------------------------------------------------------------------------
    def _on_ports(self, ports: PortMap, reconnected: bool) -> None:
        """Port monitor callback (its thread): record, and wake the converger and uplink."""
        with self._cond:
            if ports != self._ports:
                old = self._ports or {}
                gone = sorted(set(old) - set(ports))
                new = sorted(pid for pid, p in ports.items() if old.get(pid) != p)
                LOG.info("ports on %s: %d VM ports; new or changed: %s; gone: %s",
                         self.config.host, len(ports),
                         ", ".join(f"{pid}@{ports[pid].ofport}" for pid in new) or "-",
                         ", ".join(gone) or "-")
                self._ports = ports
                self._ports_version += 1
                if self._ports_dirty_since is None:
                    self._ports_dirty_since = time.monotonic()
            elif self._ports is None:
                self._ports = ports
                self._ports_version += 1
            if reconnected:
                # ovsdb-server went away and came back: OVS may have restarted; resync fully.
                self._reset_pending = True
                self.stats.resets += 1
            self._cond.notify_all()

    def set_ports(self, ports: Mapping[str, LocalPort]) -> None:
        """Feed ports without a port monitor (tests)."""
        self._on_ports(dict(ports), False)

    # -- watch thread --------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        failures = 0
        revision: int | None = None
        while not self._stop.is_set():
            try:
                state = self.client.get_desired_state(revision, self.config.poll_timeout)
            except ServerError as exc:
                if self._stop.is_set():
                    return  # stop() aborted the long-poll
                failures += 1
                self.stats.server_errors += 1
                delay = backoff(failures, self.config.min_backoff,
                                self.config.server_max_backoff)
                log = LOG.warning if failures in (1, 10) or failures % 50 == 0 else LOG.debug
                log("desired state: %s (retry %d in %.1f s; switch left as it is)",
                    exc, failures, delay)
                self._stop.wait(delay)
                continue
            except Exception:  # noqa: BLE001 - never let the watcher die
                failures += 1
                LOG.exception("desired state watch failed")
                self._stop.wait(backoff(failures, self.config.min_backoff,
                                        self.config.server_max_backoff))
                continue
            if failures:
                LOG.info("server reachable again after %d failed watch calls", failures)
            failures = 0
            if state.host != self.config.host:
                LOG.error("server sent the state of host %s to %s; ignored", state.host,
                          self.config.host)
                self._stop.wait(self.config.max_backoff)
                continue
            revision = state.revision
            with self._cond:
                if state != self._desired:
                    LOG.info("desired state revision %d: %d tap services, %d tap flows, "
                             "%d tap mirrors", state.revision, len(state.tap_services),
                             len(state.tap_flows), len(state.tap_mirrors))
                    self._desired = state
                    self._desired_version += 1
                    self._desired_received_at = time.monotonic()
                    self._cond.notify_all()

    def _turn(self, wait: Callable[[float], float | None]) -> float | None:
        """Under the lock: sleep on the condition until ``wait(now)`` (a schedule's) says act.
        Returns that ``now``, or None once the agent stops."""
        while not self._stop.is_set():
            now = time.monotonic()
            delay = wait(now)
            if delay is None:
                return now
            self._cond.wait(delay)
        return None

    # -- converge thread -----------------------------------------------------------------------
    def _converge_inputs(self) -> ConvergeInputs:
        return ConvergeInputs(self._ports_version if self._ports is not None else None,
                              self._desired_version if self._desired is not None else None,
                              self._reset_pending)

    def _converge_loop(self) -> None:
        cfg = self.config
        sched = ConvergeSchedule(
            time.monotonic(), reset_check_interval=cfg.reset_check_interval,
            resync_interval=cfg.resync_interval, verify_interval=cfg.verify_interval,
            debounce=cfg.debounce, min_backoff=cfg.min_backoff, max_backoff=cfg.max_backoff,
            error_report_after=cfg.error_report_after)
        while True:
            with self._cond:
                now = self._turn(lambda now: sched.wait(self._converge_inputs(), now))
                if now is None:
                    return
                plan = sched.plan(self._converge_inputs(), now)
                ports, desired, received_at = self._ports, self._desired, self._desired_received_at
                if plan.reset:
                    self._reset_pending = False
            try:
                synced = self._converge(plan, sched, ports, desired, received_at)
                sched.succeeded(plan, time.monotonic(), synced)
            except Exception as exc:  # noqa: BLE001 - log, back off, try again
                self.stats.sync_errors += 1
                delay, report = sched.failed(time.monotonic())
                LOG.exception("convergence failed (%s, attempt %d); retrying in %.1f s",
                              plan.reason or "check", sched.failures, delay)
                if plan.reset:
                    with self._cond:
                        self._reset_pending = True
                if desired is not None and report:
                    self._report_error(desired, exc)
            self.stats.rounds += 1

    def _converge(self, plan: ConvergePlan, sched: ConvergeSchedule, ports: PortMap | None,
                  desired: DesiredState | None, received_at: float) -> bool:
        """Carry out one round; True if it synced the switch."""
        reason = ""
        if plan.reset:
            # Start-up or OVSDB reconnection: set up only a switch that lost its canary.
            # Re-running setup on an intact switch would rewrite its static flows; the sync
            # below repairs anything else.
            if self.driver.switch_was_reset():
                self._setup()
                reason = "setup"
            else:
                LOG.info("switch intact (canary in place): no setup needed")
                reason = "check"
        elif plan.check_reset and self.driver.switch_was_reset():
            LOG.warning("switch was reset (OVS restarted or flows wiped): setting up and "
                        "resyncing")
            self.stats.resets += 1
            self._setup()
            reason = "reset"
        if ports is None or desired is None:
            # No desired state yet (server unreachable since start-up) or no port copy: leave
            # the switch exactly as it is.
            return False
        reason = reason or plan.reason
        if not reason:
            return False
        content = replace(desired, revision=0)
        if (reason == "desired state" and plan.ports_version == sched.done_ports
                and content == self._synced_content and self._held_report is not None):
            # Most revision bumps change nothing for this host. The periodic diff still
            # guards the switch; only the report moves on.
            self._held_report = replace(self._held_report, revision=desired.revision)
            self._queue_report(self._held_report)
            LOG.debug("revision %d: nothing changed for this host", desired.revision)
            return False
        changed = plan.desired_version != sched.done_desired
        self._sync(desired, ports, reason, received_at if changed else None,
                   verify=plan.verify and reason == "periodic")
        self._synced_content = content
        return True

    def _setup(self) -> None:
        t0 = time.monotonic()
        self.driver.setup()
        LOG.info("switch set up in %.1f ms", (time.monotonic() - t0) * 1000)

    def _sync(self, desired: DesiredState, ports: PortMap, reason: str,
              received_at: float | None, verify: bool = False) -> None:
        t0 = time.monotonic()
        result = (self.driver.sync(desired, ports, verify=True) if verify
                  else self.driver.sync(desired, ports))
        t1 = time.monotonic()
        ms = (t1 - t0) * 1000
        st = self.stats
        st.syncs += 1
        st.flows_added += result.added
        st.flows_removed += result.removed
        st.last_synced_revision = desired.revision
        st.last_sync_ms = ms
        st.history.append((time.time(), desired.revision, result.added, result.removed))
        del st.history[:-100]
        since = f", {(t1 - received_at) * 1000:.1f} ms after receipt" if received_at else ""
        if self.counters is not None and (reason != "periodic" or result.added
                                          or result.removed):
            self.counters.note_sync(ms)  # the periodic no-op checks are not news
        if reason == "periodic" and not (result.added or result.removed):
            LOG.debug("synced revision %d in %.1f ms, +%d -%d flows (periodic)",
                      desired.revision, ms, result.added, result.removed)
        else:
            log = LOG.warning if reason == "periodic" else LOG.info
            log("synced revision %d in %.1f ms, +%d -%d flows (%s%s)", desired.revision, ms,
                result.added, result.removed,
                "repaired: flows were missing or foreign" if reason == "periodic" else reason,
                since)
        report = HostReport(host=self.config.host, revision=desired.revision,
                            resources=tuple(sorted(result.statuses,
                                                   key=lambda s: (s.kind, s.id))),
                            taas_ids=tuple(sorted(set(result.taas_ids))))
        self._held_report = report
        self._queue_report(report)

    def _switch_taas_ids(self) -> set[int]:
        """No sync has succeeded since start-up: claim every taas_id the switch still holds.

        Without this, a service deleted while the agent was down would be purged by the server
        and its taas_id handed out again while its old flows are still on this switch.
        """
        try:
            return set(self.driver.held_taas_ids())
        except Exception:  # noqa: BLE001 - the switch may be unreachable too; claim nothing
            LOG.exception("cannot read the taas_ids held by the switch")
            return set()

    def _report_error(self, desired: DesiredState, exc: Exception) -> None:
        """The switch cannot be converged: say so, and keep claiming what may still be held."""
        reason = f"{type(exc).__name__}: {exc}"[:250]
        statuses: dict[tuple[str, str], ResourceStatus] = {}
        held = self._held_report
        if held is not None:
            for s in held.resources:
                statuses[(s.kind, s.id)] = s
        for kind, items in (("tap_service", desired.tap_services),
                            ("tap_flow", desired.tap_flows),
                            ("tap_mirror", desired.tap_mirrors)):
            for item in items:
                statuses[(kind, item.id)] = ResourceStatus(kind, item.id, "ERROR",  # type: ignore[arg-type]
                                                           reason)
        ids = set(held.taas_ids) if held is not None else self._switch_taas_ids()
        ids |= {s.taas_id for s in desired.tap_services}
        self._queue_report(HostReport(self.config.host, desired.revision,
                                      tuple(sorted(statuses.values(),
                                                   key=lambda s: (s.kind, s.id))),
                                      tuple(sorted(ids))))

    def _queue_report(self, report: HostReport) -> None:
        with self._cond:
            if report != self._report:
                self._report = report
                self._report_dirty = True
                self._cond.notify_all()

    # -- uplink thread -------------------------------------------------------------------------
    def _uplink_loop(self) -> None:
        cfg = self.config
        sched = UplinkSchedule(report_interval=cfg.report_interval, debounce=cfg.debounce,
                               min_backoff=cfg.min_backoff,
                               max_backoff=cfg.server_max_backoff)
        while True:
            with self._cond:
                now = self._turn(
                    lambda now: sched.wait(now, self._ports_dirty_since, self._report_dirty))
                if now is None:
                    return
                plan = sched.plan(now, self._ports_dirty_since is not None, self._report_dirty,
                                  self._ports is not None, self._report is not None)
                ports, report = self._ports, self._report
                if plan.send_ports:
                    self._ports_dirty_since = None
                self._report_dirty = False
            try:
                self._send(plan, ports, report)
                if sched.failures:
                    LOG.info("server reachable again after %d failed calls", sched.failures)
                if sched.succeeded(plan, time.monotonic()):
                    LOG.info("registered host %s with %s", cfg.host, self.client.base_url)
            except Exception as exc:  # noqa: BLE001 - server down or bug: retry later
                self.stats.server_errors += 1
                delay = sched.failed(plan, time.monotonic())
                log = LOG.warning if sched.failures in (1, 10) or sched.failures % 50 == 0 \
                    else LOG.debug
                log("server call failed: %s (retry %d in %.1f s)", exc, sched.failures, delay)
                with self._cond:  # put back what was not delivered
                    if plan.send_ports and self._ports_dirty_since is None:
                        self._ports_dirty_since = time.monotonic()
                    if plan.send_report and not self._report_dirty and report is self._report:
                        self._report_dirty = True
                self._stop.wait(delay)

    def _send(self, plan: UplinkPlan, ports: PortMap | None, report: HostReport | None) -> None:
        if plan.heartbeat:
            self.client.heartbeat(self.config.tunnel_ip)
            self.stats.heartbeats += 1
        if plan.send_ports and ports is not None:
            unknown = self.client.report_ports(ports.values())
            self.stats.ports_sent += 1
            if unknown:
                LOG.debug("ports unknown to the inventory: %s", ", ".join(unknown))
        if plan.send_report and report is not None:
            t0 = time.monotonic()
            self.client.report(report)
            self.stats.reports_sent += 1
            LOG.debug("reported revision %d (%d resources) in %.1f ms", report.revision,
                      len(report.resources), (time.monotonic() - t0) * 1000)
