"""Prerequisite checks: the external commands a component runs, and where Debian has them.

A missing tool otherwise shows up deep inside a run as "sh: 1: ethtool: not found"; checking
first names everything that is missing at once, with the command that installs it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

# command -> the Debian 12 package that ships it (scripts/install-deps.sh installs them all)
DEBIAN_PACKAGES: dict[str, str] = {
    "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch",
    "ovsdb-server": "openvswitch-common",
    "ovsdb-tool": "openvswitch-common",
    "ovs-ofctl": "openvswitch-common",
    "ovs-appctl": "openvswitch-common",
    "ip": "iproute2",
    "ethtool": "ethtool",
    "tcpdump": "tcpdump",
    "ping": "iputils-ping",
    "sysctl": "procps",
}

# component -> the commands it runs
COMPONENTS: dict[str, tuple[str, ...]] = {
    "taas lab": ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl",
                 "ovs-appctl", "ip", "ethtool", "tcpdump", "ping", "sysctl"),
    "taas-agent": ("ovs-vsctl", "ovs-ofctl"),
}


@dataclass(frozen=True)
class MissingCommand:
    command: str
    package: str | None  # None: not a command we know a package for


class MissingPrerequisites(RuntimeError):
    """Commands a component needs are not on PATH; the message says how to install them."""

    def __init__(self, component: str, missing: list[MissingCommand]) -> None:
        self.component = component
        self.missing = missing
        names = ", ".join(f"{m.command} (Debian package {m.package})" if m.package
                          else m.command for m in missing)
        packages = sorted({m.package for m in missing if m.package})
        lines = [f"{component} needs commands that are not installed or not on PATH: {names}."]
        if packages:
            lines.append(f"Install them with: apt-get install {' '.join(packages)}")
        super().__init__("\n".join(lines))


def require(component: str, commands: tuple[str, ...] | None = None,
            path: str | None = None) -> None:
    """Raise MissingPrerequisites naming every command of `component` (or the given
    `commands`) that is not on `path` (default: $PATH), with its Debian package."""
    wanted = commands if commands is not None else COMPONENTS[component]
    missing = [MissingCommand(c, DEBIAN_PACKAGES.get(c)) for c in wanted
               if shutil.which(c, path=path) is None]
    if missing:
        raise MissingPrerequisites(component, missing)
