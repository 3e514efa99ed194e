"""Prerequisite checks: a machine without a tool gets one message naming it and its package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taas.common.prereqs import COMPONENTS, MissingPrerequisites, require
from taas.lab import lab_dir
from taas.lab.pytest_plugin import unique_name


def path_without(tmp_path: Path, *absent: str) -> str:
    """A PATH holding every command the lab runs except `absent` (symlinks to the real ones)."""
    d = tmp_path / "bin"
    d.mkdir(parents=True)
    for cmd in COMPONENTS["taas lab"]:
        if cmd not in absent:
            real = shutil.which(cmd)
            assert real, f"{cmd} is not installed on this machine (make deps)"
            (d / cmd).symlink_to(real)
    return str(d)


def test_missing_commands_are_named_with_their_package(tmp_path: Path) -> None:
    path = path_without(tmp_path, "ethtool", "ovsdb-tool")
    with pytest.raises(MissingPrerequisites) as e:
        require("taas lab", path=path)
    msg = str(e.value)
    assert "ethtool (Debian package ethtool)" in msg
    assert "ovsdb-tool (Debian package openvswitch-common)" in msg
    assert "apt-get install ethtool openvswitch-common" in msg
    assert [m.command for m in e.value.missing] == ["ovsdb-tool", "ethtool"]
    # Everything there: no complaint.
    require("taas lab", path=path_without(tmp_path / "full"))


@pytest.mark.ovs
def test_lab_up_without_ethtool_fails_fast_and_leaves_nothing(tmp_path: Path) -> None:
    name = unique_name("p")
    env = {**os.environ, "PATH": path_without(tmp_path, "ethtool")}
    r = subprocess.run([sys.executable, "-m", "taas.cli", "lab", "up", "--name", name],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ethtool (Debian package ethtool)" in r.stderr
    assert "apt-get install ethtool" in r.stderr
    assert "Traceback" not in r.stderr
    assert not lab_dir(name).exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"tlab-{name}-" not in netns
