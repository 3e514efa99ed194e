"""A cloud for unmodified OpenStack clients: the session's Keystone with taas-server in its
catalog as the `network` service, and a clouds.yaml for its users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taas.testing.keystone import Keystone, run_keystone_server
from taas.testing.server import ServerProcess

# The configured defaults a real deployment gets (run_server alone makes quotas unlimited).
DEFAULT_QUOTAS = {"quota_tap_service": 5, "quota_tap_flow": 50, "quota_tap_mirror": 5,
                  "quota_tap_filter": 10, "quota_tap_filter_rule": 100}


@pytest.fixture(scope="module")
def cloud(keystone: Keystone) -> Iterator[ServerProcess]:
    """taas-server (SQLite, default quotas) behind Keystone, in the catalog as `network`."""
    with run_keystone_server(keystone, **DEFAULT_QUOTAS) as srv:
        keystone.set_network_endpoint(srv.url)
        yield srv


def clouds_yaml(ks: Keystone, path: Path, clouds: dict[str, str]) -> Path:
    """clouds.yaml with one cloud per (cloud name -> Keystone user name)."""
    return ks.clouds_yaml(path, clouds)
