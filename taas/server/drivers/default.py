"""The default driver: nothing beyond the core.

The desired-state projection and the per-host revisions are the core of the protocol and live
in services/projection.py; a driver only adds side effects (another backend, a fault injector)
through the hooks of ServiceDriver.
"""

from __future__ import annotations

from taas.server.drivers.base import ServiceDriver


class DefaultDriver(ServiceDriver):
    """No side effects: agents converge from the desired states the core publishes."""
