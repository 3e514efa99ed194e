"""Small process helpers shared by the lab modules."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence


class LabCommandError(RuntimeError):
    """A command run by the lab failed; carries its output for the error message."""

    def __init__(self, args: Sequence[str], rc: int, out: str, err: str) -> None:
        detail = err.strip() or out.strip()
        super().__init__(f"command failed (rc={rc}): {' '.join(args)}\n{detail}")
        self.args_ = list(args)
        self.returncode = rc
        self.stdout = out
        self.stderr = err


def run(args: Sequence[str], *, input: str | bytes | None = None, check: bool = True,
        timeout: float = 60, env: dict[str, str] | None = None) -> str:
    """Run a command, return its stdout (text); raise LabCommandError on failure if `check`."""
    data = input.encode() if isinstance(input, str) else input
    p = subprocess.run(list(args), input=data, capture_output=True, timeout=timeout, env=env)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise LabCommandError(args, p.returncode, out, p.stderr.decode(errors="replace"))
    return out


def netns_cmd(netns: str, args: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *args]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


KILLED: set[int] = set()  # every pid the lab killed in this process (see wait_reaped)


def kill_pids(pids: Iterable[int], timeout: float = 3.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL whatever is left."""
    me = os.getpid()
    todo = {p for p in pids if p > 1 and p != me}
    killed = set(todo)
    KILLED.update(killed)
    for p in todo:
        try:
            os.kill(p, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        todo = {p for p in todo if pid_alive(p)}
        if todo:
            time.sleep(0.02)
    for p in todo:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 2.0
    while todo and time.monotonic() < deadline:
        todo = {p for p in todo if pid_alive(p)}
        if todo:
            time.sleep(0.02)
    for p in killed:
        _reap(p)


def _reap(pid: int) -> None:
    """Collect a dead child of ours (agents, captures) so that no zombie outlives a lab."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def wait_reaped(timeout: float = 5.0) -> None:
    """Wait until every process the lab killed is gone from /proc, zombies included.

    Daemons detach, so their zombies belong to init; a slow init (containers) keeps them
    visible to `pgrep` for a second or two after `down`."""
    deadline = time.monotonic() + timeout
    while KILLED and time.monotonic() < deadline:
        for p in list(KILLED):
            _reap(p)
            if not os.path.exists(f"/proc/{p}"):
                KILLED.discard(p)
        if KILLED:
            time.sleep(0.05)
