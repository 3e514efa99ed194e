"""Port backends: where networks and ports come from (setting `port_backend`).

- builtin (default): the server's own /v2.0/networks and /v2.0/ports registry
  (taas/server/services/inventory.py);
- neutron: a read-only replica of neutron-server's networks and ports (neutron.py).
"""

from __future__ import annotations

from taas.server.config import Settings
from taas.server.db.session import Database
from taas.server.drivers.base import ServiceDriver
from taas.server.services.inventory import Inventory
from taas.server.services.tap import TapResources


def build_inventory(settings: Settings, driver: ServiceDriver, taps: TapResources,
                    db: Database) -> Inventory:
    if settings.port_backend == "neutron":
        from taas.server.ports.neutron import NeutronInventory

        return NeutronInventory(settings, driver, taps, db)
    return Inventory(settings, driver, taps)
