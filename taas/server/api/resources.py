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
from taas.server.api.openapi import answers, body, list_query
from taas.server.services.filters import TapFilters
from taas.server.services.tap import TapResources

router = APIRouter(prefix="/v2.0")
TS, TF, TM = "/taas/tap_services", "/taas/tap_flows", "/taas/tap_mirrors"
TFL = "/taas/tap_filters"
TAP_SERVICE_FILTERS = {**OWNED_FILTERS, "port_id": text("port_id"), "status": text("status")}
TAP_FLOW_FILTERS = {**OWNED_FILTERS, "tap_service_id": text("tap_service_id"),
                    "source_port": text("source_port"), "direction": text("direction"),
                    "vlan_filter": text("vlan_filter"), "tap_filter_id": text("tap_filter_id"),
                    "status": text("status")}
TAP_FILTER_FILTERS = {**OWNED_FILTERS, "default_action": text("default_action")}
TAP_MIRROR_FILTERS = {**OWNED_FILTERS, "port_id": text("port_id"), "remote_ip": text("remote_ip"),
                      "mirror_type": text("mirror_type"), "status": text("status")}


def _taps(request: Request) -> TapResources:
    return request.app.state.taps


# ---- tap services ---------------------------------------------------------------------------

@router.post(TS, status_code=201, response_model=None,
             responses=answers(201, schemas.TAP_SERVICE.created()),
             openapi_extra=body(*schemas.TAP_SERVICE.creates()))
async def create_tap_service(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_service", "tap_services", lambda uow, data:
                              views.tap_service(taps.create_tap_service(uow, ctx, data)))


@router.get(TS, response_model=None, responses=answers(200, schemas.TAP_SERVICE.list),
            openapi_extra=list_query(TAP_SERVICE_FILTERS))
async def list_tap_services(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_services", TAP_SERVICE_FILTERS,
                            lambda s, q: taps.list_tap_services(s, ctx, q), views.tap_service)


@router.get(TS + "/{tap_service_id}", response_model=None,
            responses=answers(200, schemas.TAP_SERVICE.one))
async def get_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_service", lambda s:
                           views.tap_service(taps.get_tap_service(s, ctx, tap_service_id)))


@router.put(TS + "/{tap_service_id}", response_model=None,
            responses=answers(200, schemas.TAP_SERVICE.one),
            openapi_extra=body(schemas.TAP_SERVICE.update))
async def update_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_service", lambda uow, data: views.tap_service(
        taps.update_tap_service(uow, ctx, tap_service_id, data)))


@router.delete(TS + "/{tap_service_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_tap_service(tap_service_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_service(uow, ctx, tap_service_id))
    return Response(status_code=204)


# ---- tap flows ------------------------------------------------------------------------------

@router.post(TF, status_code=201, response_model=None,
             responses=answers(201, schemas.TAP_FLOW.created()),
             openapi_extra=body(*schemas.TAP_FLOW.creates()))
async def create_tap_flow(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_flow", "tap_flows", lambda uow, data:
                              views.tap_flow(taps.create_tap_flow(uow, ctx, data)))


@router.get(TF, response_model=None, responses=answers(200, schemas.TAP_FLOW.list),
            openapi_extra=list_query(TAP_FLOW_FILTERS))
async def list_tap_flows(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_flows", TAP_FLOW_FILTERS,
                            lambda s, q: taps.list_tap_flows(s, ctx, q), views.tap_flow)


@router.get(TF + "/{tap_flow_id}", response_model=None,
            responses=answers(200, schemas.TAP_FLOW.one))
async def get_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_flow", lambda s:
                           views.tap_flow(taps.get_tap_flow(s, ctx, tap_flow_id)))


@router.put(TF + "/{tap_flow_id}", response_model=None,
            responses=answers(200, schemas.TAP_FLOW.one),
            openapi_extra=body(schemas.TAP_FLOW.update))
async def update_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_flow", lambda uow, data: views.tap_flow(
        taps.update_tap_flow(uow, ctx, tap_flow_id, data)))


@router.delete(TF + "/{tap_flow_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_tap_flow(tap_flow_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_flow(uow, ctx, tap_flow_id))
    return Response(status_code=204)


# ---- tap mirrors (no bulk create, as in the original) ---------------------------------------

@router.post(TM, status_code=201, response_model=None,
             responses=answers(201, schemas.TAP_MIRROR.created()),
             openapi_extra=body(*schemas.TAP_MIRROR.creates()))
async def create_tap_mirror(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await create_items(request, "tap_mirror", None, lambda uow, data:
                              views.tap_mirror(taps.create_tap_mirror(uow, ctx, data)))


@router.get(TM, response_model=None, responses=answers(200, schemas.TAP_MIRROR.list),
            openapi_extra=list_query(TAP_MIRROR_FILTERS))
async def list_tap_mirrors(request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await list_items(request, "tap_mirrors", TAP_MIRROR_FILTERS,
                            lambda s, q: taps.list_tap_mirrors(s, ctx, q), views.tap_mirror)


@router.get(TM + "/{tap_mirror_id}", response_model=None,
            responses=answers(200, schemas.TAP_MIRROR.one))
async def get_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await show_item(request, "tap_mirror", lambda s:
                           views.tap_mirror(taps.get_tap_mirror(s, ctx, tap_mirror_id)))


@router.put(TM + "/{tap_mirror_id}", response_model=None,
            responses=answers(200, schemas.TAP_MIRROR.one),
            openapi_extra=body(schemas.TAP_MIRROR.update))
async def update_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Any:
    taps = _taps(request)
    return await update_item(request, "tap_mirror", lambda uow, data: views.tap_mirror(
        taps.update_tap_mirror(uow, ctx, tap_mirror_id, data)))


@router.delete(TM + "/{tap_mirror_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_tap_mirror(tap_mirror_id: str, request: Request, ctx: Caller) -> Response:
    taps = _taps(request)
    await write(request, lambda uow: taps.delete_tap_mirror(uow, ctx, tap_mirror_id))
    return Response(status_code=204)


# ---- tap filters (no bulk create) ----------------------------------------------------------

def _filters(request: Request) -> TapFilters:
    return request.app.state.tap_filters


@router.post(TFL, status_code=201, response_model=None,
             responses=answers(201, schemas.TAP_FILTER.created()),
             openapi_extra=body(*schemas.TAP_FILTER.creates()))
async def create_tap_filter(request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await create_items(request, "tap_filter", None, lambda uow, data:
                              views.tap_filter(filters.create_tap_filter(uow, ctx, data)))


@router.get(TFL, response_model=None, responses=answers(200, schemas.TAP_FILTER.list),
            openapi_extra=list_query(TAP_FILTER_FILTERS))
async def list_tap_filters(request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await list_items(request, "tap_filters", TAP_FILTER_FILTERS,
                            lambda s, q: filters.list_tap_filters(s, ctx, q), views.tap_filter)


@router.get(TFL + "/{tap_filter_id}", response_model=None,
            responses=answers(200, schemas.TAP_FILTER.one))
async def get_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await show_item(request, "tap_filter", lambda s:
                           views.tap_filter(filters.get_tap_filter(s, ctx, tap_filter_id)))


@router.put(TFL + "/{tap_filter_id}", response_model=None,
            responses=answers(200, schemas.TAP_FILTER.one),
            openapi_extra=body(schemas.TAP_FILTER.update))
async def update_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Any:
    filters = _filters(request)
    return await update_item(request, "tap_filter", lambda uow, data: views.tap_filter(
        filters.update_tap_filter(uow, ctx, tap_filter_id, data)))


@router.delete(TFL + "/{tap_filter_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_tap_filter(tap_filter_id: str, request: Request, ctx: Caller) -> Response:
    filters = _filters(request)
    await write(request, lambda uow: filters.delete_tap_filter(uow, ctx, tap_filter_id))
    return Response(status_code=204)
