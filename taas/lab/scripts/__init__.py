"""Small programs the lab runs inside namespaces, by file path (`python <file> ARGS`).

Plain standard-library Python, no taas or scapy imports: each starts in a few tens of ms.
`script(name)` gives the path to run.
"""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).resolve().parent


def script(name: str) -> str:
    """Path of the script `name` (e.g. "send_frames"), to run with the current interpreter."""
    path = _DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no lab script {name!r} in {_DIR}")
    return str(path)
