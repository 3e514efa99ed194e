"""pytest fixtures for tests on a real lab.

Use them from a conftest.py, either as a plugin (top-level conftest only):
    pytest_plugins = ["taas.lab.pytest_plugin"]
or by importing the fixtures:
    from taas.lab.pytest_plugin import (  # noqa: F401
        fresh_lab, lab, lab_factory, lab_reaper, lab_session)

Fixtures:
- `lab_session` (session): one default lab (2 hosts) shared by the session, torn down at its end.
- `lab`: `lab_session`, reset before and after each test (`Lab.reset()`, docs/lab.md): agents
  stopped, every flow whose cookie is not the lab's L2 cookie gone, bridges other than
  br-int/br-tun/br-phy (br-tap) deleted, ports the lab did not make deleted, Mirrors cleared,
  VM ports' tag/external_ids restored, MAC tables flushed.
- `lab_factory`: `make(spec=None, *, hosts=None, server=None, token=None, agents=True) -> Lab`;
  every lab it made is torn down after the test.
- `fresh_lab`: a new default lab for one test.

Labs are always torn down: try/finally in the fixtures, SIGTERM turned into KeyboardInterrupt
(so pytest runs finalizers), and an atexit hook for whatever is still up when Python exits.
Lab names are unique per process, so concurrent test runs on one machine never collide.
"""

from __future__ import annotations

import itertools
import secrets
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taas.lab import Lab
from taas.lab.sh import wait_reaped

_counter = itertools.count()


def unique_name(prefix: str = "t") -> str:
    """A lab name no other run uses: prefix + 4 random hex + a per-process counter."""
    return f"{prefix}{secrets.token_hex(2)}{next(_counter)}"[:12]


def _sigterm_to_interrupt() -> None:
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        try:
            signal.signal(signal.SIGTERM, _handler)
        except ValueError:  # not the main thread
            pass


@pytest.fixture(scope="session")
def lab_reaper() -> Iterator[None]:
    """At the end of the session, wait until the processes of every lab are fully gone (a
    slow init may keep their zombies around for a moment; leak checks count them)."""
    yield
    wait_reaped()


@pytest.fixture(scope="session")
def lab_session(lab_reaper: None) -> Iterator[Lab]:
    _sigterm_to_interrupt()
    lb = Lab.up(None, unique_name("s"), autoclean=True)
    try:
        yield lb
    finally:
        lb.down()


@pytest.fixture
def lab(lab_session: Lab) -> Iterator[Lab]:
    lab_session.reset()
    try:
        yield lab_session
    finally:
        lab_session.reset()


@pytest.fixture
def lab_factory(lab_reaper: None) -> Iterator[Callable[..., Lab]]:
    _sigterm_to_interrupt()
    made: list[Lab] = []

    def make(spec: Any = None, *, hosts: int | None = None, name: str | None = None,
             **kw: Any) -> Lab:
        lb = Lab.up(spec, name or unique_name("f"), hosts=hosts, autoclean=True, **kw)
        made.append(lb)
        return lb

    try:
        yield make
    finally:
        errors = []
        for lb in made:
            try:
                lb.down()
            except Exception as e:  # noqa: BLE001 - tear down the others anyway, then report
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def fresh_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory()


__all__ = ["fresh_lab", "lab", "lab_factory", "lab_reaper", "lab_session", "unique_name"]
