"""The long-poll of a host's desired state: wait until the host's revision differs from the
one the agent holds, the timeout passes, the server stops, or the client goes away.

Holds no database connection while waiting. Wake-ups are per host (notifier) and reliable (a
local commit, or PostgreSQL NOTIFY naming the host), so the safety re-read of the revision runs
only every `poll` seconds (by default the long-poll timeout itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from taas.server.drivers.notifier import RevisionNotifier

MAX_WAIT = 60.0
DEFAULT_WAIT = 30.0


async def wait_for_change(
    notifier: RevisionNotifier, host: str, known: int | None, timeout: float, poll: float,
    read_revision: Callable[[], Awaitable[int]], disconnected: Callable[[], Awaitable[None]],
) -> bool:
    """Return True when the caller should answer, False when the client has gone."""
    if known is None:
        return True
    deadline = time.monotonic() + timeout
    gone = asyncio.ensure_future(disconnected())
    try:
        while True:
            event = notifier.current(host)  # taken before the read: no change slips between
            current = await read_revision()
            remaining = deadline - time.monotonic()
            # notifier.closing: the server is stopping; answer now rather than hold it up.
            if current != known or remaining <= 0 or notifier.closing:
                return True
            woken = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({woken, gone}, timeout=min(remaining, poll),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if gone.done():
                return False
    finally:
        gone.cancel()
