"""The agent's counters thread: reads the counting flows' statistics and sends what changed.

Every ``counters_interval`` seconds (the server's, from its register answer; a server that
does not give one gets no counters): the driver's counter slots (taas/agent/ovs/counters.py)
and the sync statistics are compared with what the server last acknowledged, and only the
slots that changed are sent (``CountersReport``). An idle host sends nothing. A failed send is
not lost: the next round sends the latest values of everything not yet acknowledged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Protocol

from taas.agent.ovs.counters import CounterReader
from taas.common.desired_state import (
    MAX_COUNTER_SLOTS,
    CounterSlot,
    CountersReport,
    SyncStats,
)

LOG = logging.getLogger(__name__)


class CountingDriver(Protocol):
    def counter_slots(self, reader: CounterReader) -> list[CounterSlot]: ...


class CountersClient(Protocol):
    def counters_interval(self) -> float | None: ...

    def report_counters(self, report: CountersReport) -> None: ...


class CounterReporter:
    def __init__(self, host: str, driver: CountingDriver, client: CountersClient) -> None:
        self.host = host
        self.driver = driver
        self.client = client
        self.boot = uuid.uuid4().hex  # this process: its seq and sync counts start here
        self.seq = 0
        self.sent = 0  # reports sent (tests, logs)
        self._reader = CounterReader()
        self._acked: dict[tuple[str, str, str, str], tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self._syncs = SyncStats(0, 0.0, 0.0)
        self._syncs_acked: SyncStats | None = None

    def note_sync(self, ms: float) -> None:
        """A convergence that changed something (the converge thread calls this)."""
        with self._lock:
            s = self._syncs
            self._syncs = SyncStats(s.count + 1, s.seconds + ms / 1000, ms)

    def _key(self, s: CounterSlot) -> tuple[str, str, str, str]:
        return (s.kind, s.id, f"{s.counter}:{s.direction or ''}", s.slot)

    def changed(self) -> tuple[list[CounterSlot], SyncStats | None]:
        """Slots whose values differ from what the server acknowledged (a slot that never
        counted anything is not news), and the sync statistics if they changed."""
        slots = [s for s in self.driver.counter_slots(self._reader)
                 if self._acked.get(self._key(s)) != (s.epoch, s.packets, s.bytes)
                 and (s.packets or self._key(s) in self._acked)]
        with self._lock:
            syncs = self._syncs if self._syncs != self._syncs_acked else None
        return slots, syncs

    def round(self) -> int:
        """Send what changed (in messages of at most MAX_COUNTER_SLOTS); the slots sent."""
        slots, syncs = self.changed()
        if not slots and syncs is None:
            return 0
        for i in range(0, max(len(slots), 1), MAX_COUNTER_SLOTS):
            chunk = slots[i:i + MAX_COUNTER_SLOTS]
            self.seq += 1
            self.client.report_counters(CountersReport(
                self.host, self.boot, self.seq, tuple(chunk), syncs if i == 0 else None))
            self.sent += 1
            for s in chunk:
                self._acked[self._key(s)] = (s.epoch, s.packets, s.bytes)
            if i == 0 and syncs is not None:
                self._syncs_acked = syncs
        live = {self._key(s) for s in slots} | set(self._acked)
        if len(self._acked) > 2 * len(live) + 1000:  # flows long gone
            self._acked = {k: v for k, v in self._acked.items() if k in live}
        return len(slots)

    def run(self, stop: threading.Event, wait: Callable[[float], bool] | None = None) -> None:
        """Until ``stop``: a round every counters_interval (idle while the server gives
        none)."""
        wait = wait or stop.wait
        failures = 0
        while not stop.is_set():
            every = self.client.counters_interval()
            if not every:
                wait(1.0)
                continue
            if wait(every if not failures else min(every * 2 ** failures, 60.0)):
                return
            try:
                self.round()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - server or switch away: next round
                failures += 1
                log = LOG.warning if failures in (1, 10) else LOG.debug
                log("counters not sent: %s (attempt %d)", exc, failures)
