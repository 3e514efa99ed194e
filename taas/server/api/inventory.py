"""Neutron-compatible endpoints of the built-in port inventory: networks and ports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from taas.server.api import schemas, views
from taas.server.api.auth import Caller
from taas.server.api.common import (
    OWNED_FILTERS,
    create_items,
    host_filter,
    list_items,
    show_item,
    text,
    to_bool,
    to_int,
    update_item,
    write,
)
from taas.server.api.openapi import answers, body, list_query
from taas.server.services.inventory import Inventory

router = APIRouter(prefix="/v2.0")
NETWORK_FILTERS = {**OWNED_FILTERS, "provider:segmentation_id": ("segmentation_id", to_int),
                   "admin_state_up": ("admin_state_up", to_bool)}
PORT_FILTERS = {**OWNED_FILTERS, "network_id": text("network_id"),
                "mac_address": text("mac_address"), "binding:host_id": ("host", host_filter),
                "device_owner": text("device_owner"), "device_id": text("device_id"),
                "admin_state_up": ("admin_state_up", to_bool)}


def _inventory(request: Request) -> Inventory:
    return request.app.state.inventory


@router.post("/networks", status_code=201, response_model=None,
             responses=answers(201, schemas.NETWORK.created()),
             openapi_extra=body(*schemas.NETWORK.creates()))
async def create_network(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await create_items(request, "network", None, lambda uow, data:
                              views.network(inv.create_network(uow, ctx, data)))


@router.get("/networks", response_model=None, responses=answers(200, schemas.NETWORK.list),
            openapi_extra=list_query(NETWORK_FILTERS))
async def list_networks(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await list_items(request, "networks", NETWORK_FILTERS,
                            lambda s, q: inv.list_networks(s, ctx, q), views.network)


@router.get("/networks/{network_id}", response_model=None,
            responses=answers(200, schemas.NETWORK.one))
async def get_network(network_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await show_item(request, "network", lambda s:
                           views.network(inv.get_network(s, ctx, network_id)))


@router.put("/networks/{network_id}", response_model=None,
            responses=answers(200, schemas.NETWORK.one),
            openapi_extra=body(schemas.NETWORK.update))
async def update_network(network_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await update_item(request, "network", lambda uow, data: views.network(
        inv.update_network(uow, ctx, network_id, data)))


@router.delete("/networks/{network_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_network(network_id: str, request: Request, ctx: Caller) -> Response:
    inv = _inventory(request)
    await write(request, lambda uow: inv.delete_network(uow, ctx, network_id))
    return Response(status_code=204)


@router.post("/ports", status_code=201, response_model=None,
             responses=answers(201, schemas.PORT.created()),
             openapi_extra=body(*schemas.PORT.creates()))
async def create_port(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await create_items(request, "port", None, lambda uow, data:
                              views.port(inv.create_port(uow, ctx, data)))


@router.get("/ports", response_model=None, responses=answers(200, schemas.PORT.list),
            openapi_extra=list_query(PORT_FILTERS))
async def list_ports(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await list_items(request, "ports", PORT_FILTERS,
                            lambda s, q: inv.list_ports(s, ctx, q), views.port)


@router.get("/ports/{port_id}", response_model=None,
            responses=answers(200, schemas.PORT.one))
async def get_port(port_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await show_item(request, "port", lambda s: views.port(inv.get_port(s, ctx, port_id)))


@router.put("/ports/{port_id}", response_model=None,
            responses=answers(200, schemas.PORT.one),
            openapi_extra=body(schemas.PORT.update))
async def update_port(port_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await update_item(request, "port", lambda uow, data: views.port(
        inv.update_port(uow, ctx, port_id, data)))


@router.delete("/ports/{port_id}", status_code=204, response_model=None,
               responses=answers(204))
async def delete_port(port_id: str, request: Request, ctx: Caller) -> Response:
    inv = _inventory(request)
    await write(request, lambda uow: inv.delete_port(uow, ctx, port_id))
    return Response(status_code=204)
