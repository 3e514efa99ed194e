"""Session-wide guard: the test run must leave nothing behind.

Active in CI (CI=true) or with TAAS_LEAK_CHECK=1. It is off by default because on a developer
machine other test runs may create namespaces concurrently.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _pids(name: str) -> set[str]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return set(out.split())


def _snapshot() -> dict[str, set[str]]:
    return {
        "namespaces": _namespaces(),
        "ovs-vswitchd": _pids("ovs-vswitchd"),
        "ovsdb-server": _pids("ovsdb-server"),
        "taas-agent": _pids("taas-agent"),
        "tcpdump": _pids("tcpdump"),
        "uwsgi": _pids("uwsgi"),
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    enabled = os.environ.get("CI") == "true" or os.environ.get("TAAS_LEAK_CHECK") == "1"
    before = _snapshot() if enabled else {}
    yield
    if not enabled:
        return
    after = _snapshot()
    leaked = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not leaked, f"the test run left these behind: {leaked}"


@pytest.fixture(scope="session")
def keystone() -> Iterator[Any]:
    """One real Keystone per test session (started on first use, ~10 s), with the users of
    taas.testing.server's identities and taas-server's service user."""
    from taas.testing.keystone import populate, run_keystone

    with run_keystone() as ks:
        populate(ks)
        yield ks
