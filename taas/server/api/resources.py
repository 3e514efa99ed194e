"""Neutron-style CRUD endpoints of the tap resources: one function per route, each calling
its service method by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from taas.server.api import schemas, views
from taas.server.api.auth import Caller
from taas.server.api.common import (
    OWNED_FILTERS,
    create_items,
    list_items,
    show_item,
    text,
    update_item,
    write,
)
from taas.server.api.routes import CrudRoutes
from taas.server.services.filters import TapFilters
from taas.server.services.tap import TapResources

router = APIRouter(prefix="/v2.0")
TAP_SERVICE_FILTERS = {**OWNED_FILTERS, "port_id": text("port_id"), "status": text("status")}
TAP_FLOW_FILTERS = {**OWNED_FILTERS, "tap_service_id": text("tap_service_id"),
                    "source_port": text("source_port"), "direction": text("direction"),
                    "vlan_filter": text("vlan_filter"), "tap_filter_id": text("tap_filter_id"),
                    "status": text("status")}
TAP_FILTER_FILTERS = {**OWNED_FILTERS, "default_action": text("default_action")}
TAP_MIRROR_FILTERS = {**OWNED_FILTERS, "port_id": text("port_id"), "remote_ip": text("remote_ip"),
                      "mirror_type": text("mirror_type"), "status": text("status")}
TAP_SERVICES = CrudRoutes(router, "/taas/tap_services", "tap_service_id", schemas.TAP_SERVICE,
                          TAP_SERVICE_FILTERS)
TAP_FLOWS = CrudRoutes(router, "/taas/tap_flows", "tap_flow_id", schemas.TAP_FLOW,
                       TAP_FLOW_FILTERS)
TAP_MIRRORS = CrudRoutes(router, "/taas/tap_mirrors", "tap_mirror_id", schemas.TAP_MIRROR,
                         TAP_MIRROR_FILTERS)
TAP_FILTERS = CrudRoutes(router, "/taas/tap_filters", "tap_filter_id", schemas.TAP_FILTER,
                         TAP_FILTER_FILTERS)


def _taps(request: Request) -> TapResources:
    return request.app.state.taps


# ---- tap services ---------------------------------------------------------------------------

@TAP_SERVICES.create
async def create_tap_service(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_service", "tap_services", lambda uow, data:
                              views.tap_service(taps.create_tap_service(uow, ctx, data)))


@TAP_SERVICES.list
async def list_tap_services(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_services", TAP_SERVICE_FILTERS,
                            lambda s, q: taps.list_tap_services(s, ctx, q), views.tap_service)


@TAP_SERVICES.show
async def get_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_service", lambda s:
                           views.tap_service(taps.get_tap_service(s, ctx, tap_service_id)))


@TAP_SERVICES.update
async def update_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_service", lambda uow, data: views.tap_service(
        taps.update_tap_service(uow, ctx, tap_service_id, data)))


@TAP_SERVICES.delete
async def delete_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_service(uow, ctx, tap_service_id))
    return Response(status_code=204)


# ---- tap flows ------------------------------------------------------------------------------

@TAP_FLOWS.create
async def create_tap_flow(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_flow", "tap_flows", lambda uow, data:
                              views.tap_flow(taps.create_tap_flow(uow, ctx, data)))


@TAP_FLOWS.list
async def list_tap_flows(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_flows", TAP_FLOW_FILTERS,
                            lambda s, q: taps.list_tap_flows(s, ctx, q), views.tap_flow)


@TAP_FLOWS.show
async def get_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_flow", lambda s:
                           views.tap_flow(taps.get_tap_flow(s, ctx, tap_flow_id)))


@TAP_FLOWS.update
async def update_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_flow", lambda uow, data: views.tap_flow(
        taps.update_tap_flow(uow, ctx, tap_flow_id, data)))


@TAP_FLOWS.delete
async def delete_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_flow(uow, ctx, tap_flow_id))
    return Response(status_code=204)


# ---- tap mirrors (no bulk create, as in the original) ---------------------------------------

@TAP_MIRRORS.create
async def create_tap_mirror(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_mirror", None, lambda uow, data:
                              views.tap_mirror(taps.create_tap_mirror(uow, ctx, data)))


@TAP_MIRRORS.list
async def list_tap_mirrors(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_mirrors", TAP_MIRROR_FILTERS,
                            lambda s, q: taps.list_tap_mirrors(s, ctx, q), views.tap_mirror)


@TAP_MIRRORS.show
async def get_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_mirror", lambda s:
                           views.tap_mirror(taps.get_tap_mirror(s, ctx, tap_mirror_id)))


@TAP_MIRRORS.update
async def update_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_mirror", lambda uow, data: views.tap_mirror(
        taps.update_tap_mirror(uow, ctx, tap_mirror_id, data)))


@TAP_MIRRORS.delete
async def delete_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_mirror(uow, ctx, tap_mirror_id))
    return Response(status_code=204)


# ---- tap filters (no bulk create) ----------------------------------------------------------

def _filters(request: Request) -> TapFilters:
    return request.app.state.tap_filters


@TAP_FILTERS.create
async def create_tap_filter(request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await create_items(request, "tap_filter", None, lambda uow, data:
                              views.tap_filter(filters.create_tap_filter(uow, ctx, data)))


@TAP_FILTERS.list
async def list_tap_filters(request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await list_items(request, "tap_filters", TAP_FILTER_FILTERS,
                            lambda s, q: filters.list_tap_filters(s, ctx, q), views.tap_filter)


@TAP_FILTERS.show
async def get_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await show_item(request, "tap_filter", lambda s:
                           views.tap_filter(filters.get_tap_filter(s, ctx, tap_filter_id)))


@TAP_FILTERS.update
async def update_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await update_item(request, "tap_filter", lambda uow, data: views.tap_filter(
        filters.update_tap_filter(uow, ctx, tap_filter_id, data)))


@TAP_FILTERS.delete
async def delete_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Response:
    filters = _filters(request)
    await write(request, lambda uow: filters.delete_tap_filter(uow, ctx, tap_filter_id))
    return Response(status_code=204)
