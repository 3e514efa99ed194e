"""Removing labs: by state, or by name alone for the leftovers of a crashed lab.

Also the labs this process made with `autoclean`, torn down at interpreter exit (tests).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taas.lab import spec as specmod
from taas.lab.registration import unregister_state
from taas.lab.sh import cmdline, kill_pids, read_pidfile, run
from taas.lab.state import LAB_DIR_PREFIX, LAB_ROOT, NETNS_PREFIX, lab_dir

_registry_lock = threading.Lock()
_live_labs: dict[str, Callable[[], None]] = {}  # lab name -> its `down`, for atexit cleanup


def remember(name: str, down: Callable[[], None]) -> None:
    """Tear this lab down when the process exits (unless `forget` comes first)."""
    with _registry_lock:
        _live_labs[name] = down


def forget(name: str) -> None:
    with _registry_lock:
        _live_labs.pop(name, None)


@atexit.register
def _atexit_cleanup() -> None:
    with _registry_lock:
        downs = list(_live_labs.values())
    for down in downs:
        with contextlib.suppress(Exception):
            down()


def underlays_in_use() -> set[str]:
    """Underlay subnets of the labs on this machine (a new lab picks another one)."""
    used = set()
    for sf in LAB_ROOT.glob(f"{LAB_DIR_PREFIX}*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            used.add(json.loads(sf.read_text())["underlay_cidr"])
    return used


def list_labs() -> list[str]:
    """Names of every lab on this machine (lab dirs and namespaces)."""
    names: set[str] = set()
    if LAB_ROOT.exists():
        for p in LAB_ROOT.iterdir():
            if p.name.startswith(LAB_DIR_PREFIX) and p.is_dir():
                names.add(p.name[len(LAB_DIR_PREFIX):])
    for ns in _netns_list():
        if ns.startswith(NETNS_PREFIX):
            names.add(ns[len(NETNS_PREFIX):].split("-", 1)[0])
    return sorted(n for n in names if specmod.NAME_RE.match(n))


def _netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _lab_processes(name: str, state: dict[str, Any] | None) -> set[int]:
    d = str(lab_dir(name))
    pids: set[int] = set()
    for a in (state or {}).get("agents", []):
        if "agent" in cmdline(a["pid"]):
            pids.add(a["pid"])
    for pf in Path(d).glob("*/*.pid") if Path(d).exists() else []:
        pid = read_pidfile(str(pf))
        if pid and d in cmdline(pid):
            pids.add(pid)
    # Daemons whose pidfile was never written, agents of a lost state file, captures.
    for ent in os.listdir("/proc"):
        if ent.isdigit():
            cl = cmdline(int(ent))
            if f"{d}/" in cl and any(k in cl for k in ("ovs", "agent", "tcpdump")):
                pids.add(int(ent))
    return pids


def _find_state(name: str) -> dict[str, Any] | None:
    """The state of a lab known only by name: in its lab dir, or where its pointer says."""
    d = lab_dir(name)
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((d / "state.json").read_text()))
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(Path((d / "state-file").read_text().strip()).read_text()))
    return None


def destroy(name: str, state: dict[str, Any] | None = None) -> None:
    """Remove a lab by name: processes, namespaces (and their veths), lab dir, server entries."""
    specmod.check_name(name)
    d = lab_dir(name)
    if state is None:
        state = _find_state(name)
    prefix = f"{NETNS_PREFIX}{name}-"
    namespaces = [ns for ns in _netns_list() if ns.startswith(prefix)]
    pids = _lab_processes(name, state)
    for ns in namespaces:
        out = run(["ip", "netns", "pids", ns], check=False)
        pids |= {int(p) for p in out.split() if p.isdigit()}
    kill_pids(pids)
    if state:  # after the agents are gone, so that none reports the ports again
        # A broken registration record must never keep the lab from being removed.
        with contextlib.suppress(Exception):
            unregister_state(state)
    for ns in namespaces:
        run(["ip", "netns", "delete", ns], check=False)
    shutil.rmtree(d, ignore_errors=True)
    if state and state.get("state_file"):
        with contextlib.suppress(OSError):
            Path(state["state_file"]).unlink()


def destroy_all() -> list[str]:
    names = list_labs()
    for n in names:
        destroy(n)
    return names
