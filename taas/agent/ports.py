"""The one description of a VM port on this host's integration bridge.

The port monitor builds it from OVSDB, the agent reports it to the server, the compiler
reads it: the same type all the way (pure data, no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class LocalPort:
    """A VM port on br-int."""

    port_id: str  # external_ids:iface-id, the Neutron port id
    ofport: int
    local_vlan: int | None  # Port.tag: the host's local VLAN of the port's network
    mac: str  # external_ids:attached-mac (lower case)
    name: str  # Interface.name


PortMap = dict[str, LocalPort]
