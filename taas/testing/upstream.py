"""Upstream's own TaaS test suites, unchanged, as subprocesses: openstacksdk's functional TaaS
tests and neutron-tempest-plugin's tap_as_a_service API tests, each run by pytest with a JUnit
report, reading a generated clouds.yaml / tempest.conf. Used against taas-server behind Keystone
(tests/keystone) and against neutron-server's endpoint on the Neutron lab (tests/neutron)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from taas.lab.keystone import REGION, Keystone

SDK_MODULES = ["openstack.tests.functional.network.v2.test_taas",
               "openstack.tests.functional.network.v2.test_tap_mirror"]
SDK_TESTS = 12  # openstacksdk 4.22.0
TEMPEST_PACKAGE = "neutron_tempest_plugin.tap_as_a_service.api"
TEMPEST_TESTS = 15  # neutron-tempest-plugin 3.3.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "OPENSTACKSDK_"))}
    return {**env, **extra}


class SuiteRun:
    """pytest on a suite in a subprocess (own session, output in a file), started at once;
    `result()` waits for it and returns the JUnit counts (tests, failures, errors, skipped).
    Two runs may overlap (their projects and users are their own)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.report = cwd / "report.xml"
        self.output = cwd / "output.txt"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
                 f"--junitxml={self.report}", "--rootdir", str(cwd), *args],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def result(self, timeout: float = 900) -> dict[str, int]:
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        text = self.output.read_text(errors="replace")
        assert self.report.exists(), text[-10000:]
        suite = ET.parse(self.report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert suite is not None
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
        counts["returncode"] = self.proc.returncode
        counts["output"] = 0
        if self.proc.returncode != 0 or any(counts[k] for k in ("failures", "errors", "skipped")):
            print(text[-25000:])
        return counts


def run_pytest(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, int]:
    """Run pytest in a subprocess; the JUnit counts (tests, failures, errors, skipped)."""
    return SuiteRun(args, cwd, env).result()


TEMPEST_CONF = """\
[DEFAULT]
log_file = {dir}/tempest.log
[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = {admin_password}
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default
[identity]
uri_v3 = {auth_url}
auth_version = v3
region = {region}
[identity-feature-enabled]
api_v2 = false
[service_available]
neutron = true
nova = false
glance = false
cinder = false
swift = false
[network]
catalog_type = network
endpoint_type = publicURL
region = {region}
[network-feature-enabled]
api_extensions = all
"""




def sdk_env(config: Path) -> dict[str, str]:
    """Environment of openstacksdk's functional tests for a clouds.yaml with the clouds
    devstack (a member), devstack-alt (another project's member), devstack-admin and
    devstack-system-admin."""
    return clean_env(OS_CLIENT_CONFIG_FILE=str(config), OS_CLOUD="devstack-admin",
                     OPENSTACKSDK_DEMO_CLOUD="devstack", OPENSTACKSDK_DEMO_CLOUD_ALT="devstack-alt",
                     OPENSTACKSDK_OPERATOR_CLOUD="devstack-admin",
                     OPENSTACKSDK_SYSTEM_ADMIN_CLOUD="devstack-system-admin",
                     # Per-test timeout (5 s unless set; upstream's tox sets a longer one for
                     # functional runs): a loaded 2-core machine needs more.
                     OS_TEST_TIMEOUT="300")


def start_sdk_suite(ks: Keystone, member: str, alt: str, workdir: Path) -> SuiteRun:
    """openstacksdk's functional TaaS tests as `member` (alt: `alt`), admin the operator."""
    config = ks.clouds_yaml(workdir / "clouds.yaml", {
        "devstack": member, "devstack-alt": alt, "devstack-admin": "admin",
        "devstack-system-admin": "admin"})
    return SuiteRun(["--pyargs", *SDK_MODULES], workdir, sdk_env(config))


def start_tempest_suite(ks: Keystone, workdir: Path) -> SuiteRun:
    """neutron-tempest-plugin's TaaS API tests; tempest's dynamic credentials make a project
    and a `member` user per test class (the primary) and use the admin, through Keystone."""
    conf = workdir / "etc" / "tempest.conf"
    conf.parent.mkdir()
    conf.write_text(TEMPEST_CONF.format(dir=workdir, admin_password=ks.admin_password,
                                        auth_url=ks.auth_url, region=REGION))
    env = clean_env(TEMPEST_CONFIG_DIR=str(conf.parent), TEMPEST_CONFIG="tempest.conf")
    return SuiteRun(["--pyargs", TEMPEST_PACKAGE], workdir, env)


def run_sdk_suite(ks: Keystone, member: str, alt: str, workdir: Path) -> dict[str, int]:
    return start_sdk_suite(ks, member, alt, workdir).result()


def run_tempest_suite(ks: Keystone, workdir: Path) -> dict[str, int]:
    return start_tempest_suite(ks, workdir).result()


def all_passed(total: int) -> dict[str, int]:
    """The counts run_pytest returns when `total` tests ran and passed."""
    return {"tests": total, "failures": 0, "errors": 0, "skipped": 0, "returncode": 0,
            "output": 0}
