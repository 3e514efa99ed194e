"""Data-plane tests: the OVS driver on a real lab (real OVS, real packets, no server/agent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from taasdp import Taas

from taas.lab import Lab
from taas.lab.pytest_plugin import (  # noqa: F401
    fresh_lab,
    lab,
    lab_factory,
    lab_reaper,
    lab_session,
)


@pytest.fixture
def taas(lab: Lab) -> Iterator[Taas]:  # noqa: F811
    t = Taas(lab)
    try:
        yield t
    finally:
        t.close()
