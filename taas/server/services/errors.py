"""Errors of the service layer; each maps to one Neutron error type and HTTP status."""

from __future__ import annotations


class TaasError(Exception):
    status = 500
    type = "TaasError"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequest(TaasError):
    status, type = 400, "HTTPBadRequest"


class InvalidInput(TaasError):
    status, type = 400, "InvalidInput"


class NotAuthorized(TaasError):
    status, type = 403, "HTTPForbidden"


class PolicyNotAuthorized(TaasError):
    status, type = 403, "PolicyNotAuthorized"


class PortDoesNotBelongToTenant(TaasError):
    status, type = 403, "PortDoesNotBelongToTenant"


class TapServiceNotBelongToTenant(TaasError):
    status, type = 403, "TapServiceNotBelongToTenant"


class NotFound(TaasError):
    status, type = 404, "NotFound"


class TapServiceNotFound(NotFound):
    type = "TapServiceNotFound"


class TapFlowNotFound(NotFound):
    type = "TapFlowNotFound"


class TapMirrorNotFound(NotFound):
    type = "TapMirrorNotFound"


class TapFilterNotFound(NotFound):
    type = "TapFilterNotFound"


class PortNotFound(NotFound):
    type = "PortNotFound"


class NetworkNotFound(NotFound):
    type = "NetworkNotFound"


class AgentNotFound(NotFound):
    type = "AgentNotFound"


class MarkerNotFound(NotFound):
    """A list marker the caller cannot see: unknown and foreign ids answer alike."""

    type = "MarkerNotFound"


class Conflict(TaasError):
    status, type = 409, "Conflict"


class TapServiceLimitReached(Conflict):
    type = "TapServiceLimitReached"


class TapMirrorTunnelConflict(Conflict):
    type = "TapMirrorTunnelConflict"


class PortInUseAsTapServiceDestination(Conflict):
    type = "PortInUseAsTapServiceDestination"


class TapFlowAlreadyExists(Conflict):
    type = "TapFlowAlreadyExists"


class TapFilterInUse(Conflict):
    type = "TapFilterInUse"


class SegmentationIdConflict(Conflict):
    type = "SegmentationIdConflict"


class NetworkInUse(Conflict):
    type = "NetworkInUse"


class MacAddressInUse(Conflict):
    type = "MacAddressInUse"


class IdInUse(Conflict):
    type = "IdInUse"


class TunnelIpInUse(Conflict):
    type = "TunnelIpInUse"


class DriverError(TaasError):
    """The service driver failed after commit; the change was undone."""

    status, type = 500, "TaasDriverError"


class OverQuota(Conflict):
    type = "OverQuota"
