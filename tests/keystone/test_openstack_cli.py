"""The real `openstack` binary (python-openstackclient) against taas-server behind Keystone:
networks, ports (an admin naming a project by name, resolved through Keystone) and the tap
service/flow/mirror commands, as a project member and as the admin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taas.testing.keystone import Keystone
from taas.testing.server import ServerProcess

from .conftest import clouds_yaml

MEMBER, ALT, ADMIN = "member", "alt", "admin"


class Osc:
    def __init__(self, config: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.env["OS_CLIENT_CONFIG_FILE"] = str(config)
        self.binary = shutil.which("openstack")
        assert self.binary, "python-openstackclient is not installed"

    def run(self, cloud: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "--os-cloud", cloud, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def __call__(self, cloud: str, *args: str) -> Any:
        """`openstack <args> -f json` that must succeed; its parsed output (None if none)."""
        res = self.run(cloud, *args, "-f", "json") if args[-1] != "delete!" else None
        if res is None:  # delete commands print nothing and take no -f
            res = self.run(cloud, *args[:-1])
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return json.loads(res.stdout) if res.stdout.strip() else None


@pytest.fixture(scope="module")
def osc(cloud: ServerProcess, keystone: Keystone, tmp_path_factory: pytest.TempPathFactory
        ) -> Osc:
    config = clouds_yaml(keystone, tmp_path_factory.mktemp("osc") / "clouds.yaml",
                         {MEMBER: "a-member", ALT: "b-member", ADMIN: "admin"})
    return Osc(config)


def test_openstack_cli_as_member_and_admin(osc: Osc, keystone: Keystone) -> None:
    project_a = keystone.project_id("project-a")
    net = osc(MEMBER, "network", "create", "osc-net")
    assert net["project_id"] == project_a
    mon = osc(MEMBER, "port", "create", "--network", "osc-net", "osc-mon")
    # The admin names the project by name: the client resolves it through Keystone.
    src = osc(ADMIN, "port", "create", "--project", "project-a", "--network", net["id"],
              "osc-src")
    assert mon["project_id"] == src["project_id"] == project_a

    ts = osc(MEMBER, "tap", "service", "create", "--port", "osc-mon", "--name", "osc-ts")
    assert ts["port_id"] == mon["id"] and ts["project_id"] == project_a
    tf = osc(MEMBER, "tap", "flow", "create", "--port", src["id"], "--tap-service", "osc-ts",
             "--direction", "BOTH", "--name", "osc-tf", "--vlan-filter", "10-20")
    assert tf["tap_service_id"] == ts["id"] and tf["vlan_filter"] == "10-20"
    tm = osc(MEMBER, "tap", "mirror", "create", "--port", src["id"], "--directions",
             "IN=4101", "--remote-ip", "192.0.2.50", "--mirror-type", "gre", "--name", "osc-tm")
    assert tm["port_id"] == src["id"]

    listed = osc(ADMIN, "tap", "service", "list", "--project", "project-a")
    assert ts["id"] in {s["ID"] for s in listed}
    assert [f["ID"] for f in osc(MEMBER, "tap", "flow", "list")] == [tf["id"]]
    assert osc(MEMBER, "tap", "service", "show", "osc-ts")["id"] == ts["id"]
    assert osc(MEMBER, "tap", "mirror", "show", tm["id"])["remote_ip"] == "192.0.2.50"
    # Another project's member sees nothing of it.
    assert osc(ALT, "tap", "service", "list") == []
    assert osc.run(ALT, "tap", "service", "show", ts["id"]).returncode != 0

    osc(MEMBER, "tap", "flow", "delete", tf["id"], "delete!")
    osc(MEMBER, "tap", "service", "delete", ts["id"], "delete!")
    osc(MEMBER, "tap", "mirror", "delete", tm["id"], "delete!")
    assert osc(MEMBER, "tap", "service", "list") == []
    osc(MEMBER, "port", "delete", mon["id"], "delete!")
