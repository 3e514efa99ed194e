"""A driver for tests: fails the postcommit hook of resources whose name starts with
``fail-postcommit`` so that the rollback path can be exercised on a real server, and raises an
unexpected error in the precommit hook of those named ``fail-precommit`` (a bug: 500)."""

from __future__ import annotations

from taas.server.drivers.base import DriverContext
from taas.server.drivers.default import DefaultDriver

FAIL_PREFIX = "fail-postcommit"
BUG_PREFIX = "fail-precommit"


class FaultInjectingDriver(DefaultDriver):
    def _maybe_fail(self, ctx: DriverContext) -> None:
        if str(getattr(ctx.resource, "name", "")).startswith(FAIL_PREFIX):
            raise RuntimeError(f"injected postcommit failure for {ctx.kind} {ctx.resource.id}")

    def _maybe_bug(self, ctx: DriverContext) -> None:
        if str(getattr(ctx.resource, "name", "")).startswith(BUG_PREFIX):
            raise RuntimeError(f"injected precommit bug for {ctx.kind} {ctx.resource.id}")

    create_tap_service_postcommit = _maybe_fail
    create_tap_flow_postcommit = _maybe_fail
    create_tap_mirror_postcommit = _maybe_fail
    create_tap_service_precommit = _maybe_bug
