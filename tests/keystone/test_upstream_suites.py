"""Upstream's own TaaS test suites, unchanged, against taas-server behind a real Keystone, as
upstream runs them (ordinary project members): openstacksdk's functional TaaS tests and
neutron-tempest-plugin's tap_as_a_service API tests (taas/testing/upstream.py runs them)."""

from __future__ import annotations

from pathlib import Path

from taas.testing.keystone import Keystone
from taas.testing.server import ServerProcess
from taas.testing.upstream import (
    SDK_TESTS,
    TEMPEST_TESTS,
    all_passed,
    run_sdk_suite,
    run_tempest_suite,
)


def test_openstacksdk_functional_taas_tests(cloud: ServerProcess, keystone: Keystone,
                                            tmp_path: Path) -> None:
    counts = run_sdk_suite(keystone, "a-member", "b-member", tmp_path)
    assert counts == all_passed(SDK_TESTS), cloud.log()


def test_neutron_tempest_plugin_taas_api_tests(cloud: ServerProcess, keystone: Keystone,
                                               tmp_path: Path) -> None:
    counts = run_tempest_suite(keystone, tmp_path)
    assert counts == all_passed(TEMPEST_TESTS), cloud.log()
