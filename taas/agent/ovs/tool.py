"""Running OVS's command-line tools, and the one error every switch call raises."""

from __future__ import annotations

import subprocess


class SwitchError(RuntimeError):
    """A command to OVS failed."""


def run(args: list[str], timeout: float = 60) -> str:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SwitchError(f"{args[0]} timed out: {' '.join(args[1:4])}") from e
    if res.returncode != 0:
        raise SwitchError(f"{' '.join(args[:4])}...: {res.stderr.strip()[:2000]}")
    return res.stdout
