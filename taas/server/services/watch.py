"""The long-poll of a host's desired state: wait until the host's revision differs from the
one the agent holds, the timeout passes, the server stops, or the client goes away.

Holds no database connection while waiting. Wake-ups are per host (notifier) and reliable (a
local commit, or PostgreSQL NOTIFY naming the host), so the safety re-read of the revision runs
only every `poll` seconds (by default the long-poll timeout itself).

An idle agent's long-poll costs no read of its own: the revision the previous answer read is
kept with the host's notifier event taken before that read (`KnownRevisions`); while that event
has not fired, no commit has changed the host since, so the value still holds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from taas.server.drivers.notifier import RevisionNotifier

MAX_WAIT = 60.0
DEFAULT_WAIT = 30.0
# A long-poll ends at a random point of the last JITTER share of its timeout: agents started
# together (a rolling restart) do not keep timing out together, which would make bursts.
JITTER = 0.1
KNOWN_SIZE = 50_000  # hosts whose revision a replica remembers


class KnownRevisions:
    """host -> (revision, the notifier event taken before it was read, when). A value is
    valid while its event is the host's current one and unset (no wake-up since the read),
    for at most `ttl` seconds (the safety re-read still happens against lost wake-ups).
    Loop thread only."""

    def __init__(self, notifier: RevisionNotifier) -> None:
        self.notifier = notifier
        self._known: dict[str, tuple[int, asyncio.Event, float]] = {}

    def get(self, host: str, event: asyncio.Event, ttl: float) -> int | None:
        known = self._known.get(host)
        if known is None:
            return None
        revision, seen, at = known
        if seen is not event or event.is_set() or time.monotonic() - at >= ttl:
            return None
        return revision

    def put(self, host: str, event: asyncio.Event, revision: int) -> None:
        if event.is_set():
            return  # a change came in during the read: the value may be behind
        if len(self._known) >= KNOWN_SIZE and host not in self._known:
            self._known.pop(next(iter(self._known)))
        self._known[host] = (revision, event, time.monotonic())


async def wait_for_change(
    notifier: RevisionNotifier, host: str, known: int | None, timeout: float, poll: float,
    read_revision: Callable[[], Awaitable[int]], disconnected: Callable[[], Awaitable[None]],
    revisions: KnownRevisions | None = None,
) -> bool:
    """Return True when the caller should answer, False when the client has gone."""
    if known is None:
        return True
    deadline = time.monotonic() + timeout * (1 - JITTER * random.random())  # noqa: S311
    gone = asyncio.ensure_future(disconnected())
    try:
        while True:
            event = notifier.current(host)  # taken before the read: no change slips between
            current = revisions.get(host, event, poll) if revisions is not None else None
            if current is None:
                current = await read_revision()
                if revisions is not None:
                    revisions.put(host, event, current)
            remaining = deadline - time.monotonic()
            # notifier.closing: the server is stopping; answer now rather than hold it up.
            if current != known or remaining <= 0 or notifier.closing:
                return True
            woken = asyncio.ensure_future(event.wait())
            notifier.waiting += 1
            try:
                await asyncio.wait({woken, gone}, timeout=min(remaining, poll),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                notifier.waiting -= 1
                woken.cancel()
            if gone.done():
                return False
    finally:
        gone.cancel()
