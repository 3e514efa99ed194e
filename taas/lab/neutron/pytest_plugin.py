"""pytest fixtures for tests on the Neutron lab (taas/lab/neutron, docs/neutron.md).

    from taas.lab.neutron.pytest_plugin import neutron_lab, neutron_lab_factory  # noqa: F401

- `neutron_lab_factory` (module): `make(spec=None, *, hosts=None, agents=True) -> Lab`; every
  lab it made is torn down at the end of the module. One lab per module: a bring-up costs
  30-75 s, and `Lab.reset()` does not apply to a Neutron lab.
- `neutron_lab` (module): one lab of the default spec.

Labs are torn down whatever happens (try/finally, SIGTERM as KeyboardInterrupt, atexit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taas.lab import Lab
from taas.lab.neutron.build import up
from taas.lab.pytest_plugin import _sigterm_to_interrupt, unique_name


@pytest.fixture(scope="module")
def neutron_lab_factory() -> Iterator[Callable[..., Lab]]:
    _sigterm_to_interrupt()
    made: list[Lab] = []

    def make(spec: Any = None, *, hosts: int | None = None, agents: bool = True) -> Lab:
        lab = up(spec, unique_name("n"), hosts=hosts, agents=agents, autoclean=True)
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.down()


@pytest.fixture(scope="module")
def neutron_lab(neutron_lab_factory: Callable[..., Lab]) -> Lab:
    return neutron_lab_factory()
