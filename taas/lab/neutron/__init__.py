"""The Neutron lab: `taas lab up --neutron` (docs/neutron.md)."""

from taas.lab.neutron.build import (
    TAAS_AGENT_ARGS,
    keystone_of,
    move_vm,
    restart_neutron_agent,
    up,
)
from taas.lab.neutron.control import NeutronLabError

__all__ = ["NeutronLabError", "TAAS_AGENT_ARGS", "keystone_of", "move_vm",
           "restart_neutron_agent", "up"]
