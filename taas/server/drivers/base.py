"""The service driver interface: one precommit and one postcommit hook per change.

``*_precommit`` runs inside the database transaction (raise to abort the change);
``*_postcommit`` runs after the commit (raise on a create and the service layer deletes the
resource again and reports an error).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from taas.server.config import Settings
from taas.server.drivers.notifier import RevisionNotifier


@dataclass
class DriverContext:
    """What a hook gets: the resource and, for precommit, the open transaction's session."""

    kind: str  # "tap_service" | "tap_flow" | "tap_mirror" | "inventory" | "agent"
    resource: Any
    session: Session | None = None


class ServiceDriver:
    """No-op hooks; subclasses override what they need."""

    def __init__(self, settings: Settings, notifier: RevisionNotifier, is_postgres: bool) -> None:
        self.settings = settings
        self.notifier = notifier
        self.is_postgres = is_postgres

    def create_tap_service_precommit(self, ctx: DriverContext) -> None: ...
    def create_tap_service_postcommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_service_precommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_service_postcommit(self, ctx: DriverContext) -> None: ...
    def create_tap_flow_precommit(self, ctx: DriverContext) -> None: ...
    def create_tap_flow_postcommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_flow_precommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_flow_postcommit(self, ctx: DriverContext) -> None: ...
    def create_tap_mirror_precommit(self, ctx: DriverContext) -> None: ...
    def create_tap_mirror_postcommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_mirror_precommit(self, ctx: DriverContext) -> None: ...
    def delete_tap_mirror_postcommit(self, ctx: DriverContext) -> None: ...

    # Changes outside tap resources that still alter desired states (port bindings, tunnel IPs).
    def state_changed_precommit(self, ctx: DriverContext) -> None: ...
    def state_changed_postcommit(self, ctx: DriverContext) -> None: ...


def load_driver(settings: Settings, notifier: RevisionNotifier, is_postgres: bool) -> ServiceDriver:
    module_name, _, class_name = settings.service_driver.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, ServiceDriver)):
        raise TypeError(f"{settings.service_driver} is not a ServiceDriver")
    return cls(settings, notifier, is_postgres)
