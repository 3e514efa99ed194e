"""Neutron-compatible endpoints of the built-in port inventory: networks and ports."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

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
from taas.server.api.openapi import answers
from taas.server.api.routes import CrudRoutes
from taas.server.services import errors
from taas.server.services.inventory import Inventory

router = APIRouter(prefix="/v2.0")
NETWORK_FILTERS = {**OWNED_FILTERS, "provider:segmentation_id": ("segmentation_id", to_int),
                   "admin_state_up": ("admin_state_up", to_bool)}
PORT_FILTERS = {**OWNED_FILTERS, "network_id": text("network_id"),
                "mac_address": text("mac_address"), "binding:host_id": ("host", host_filter),
                "device_owner": text("device_owner"), "device_id": text("device_id"),
                "admin_state_up": ("admin_state_up", to_bool)}
NETWORKS = CrudRoutes(router, "/networks", "network_id", schemas.NETWORK, NETWORK_FILTERS)
PORTS = CrudRoutes(router, "/ports", "port_id", schemas.PORT, PORT_FILTERS)


def _inventory(request: Request) -> Inventory:
    return request.app.state.inventory


@NETWORKS.create
async def create_network(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await create_items(request, "network", None, lambda uow, data:
                              views.network(inv.create_network(uow, ctx, data)))


@NETWORKS.list
async def list_networks(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await list_items(request, "networks", NETWORK_FILTERS,
                            lambda s, q: inv.list_networks(s, ctx, q), views.network)


@NETWORKS.show
async def get_network(network_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await show_item(request, "network", lambda s:
                           views.network(inv.get_network(s, ctx, network_id)))


@NETWORKS.update
async def update_network(network_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await update_item(request, "network", lambda uow, data: views.network(
        inv.update_network(uow, ctx, network_id, data)))


@NETWORKS.delete
async def delete_network(network_id: str, request: Request, ctx: Caller) -> Response:
    inv = _inventory(request)
    await write(request, lambda uow: inv.delete_network(uow, ctx, network_id))
    return Response(status_code=204)


@PORTS.create
async def create_port(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await create_items(request, "port", None, lambda uow, data:
                              views.port(inv.create_port(uow, ctx, data)))


@PORTS.list
async def list_ports(request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await list_items(request, "ports", PORT_FILTERS,
                            lambda s, q: inv.list_ports(s, ctx, q), views.port)


@PORTS.show
async def get_port(port_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await show_item(request, "port", lambda s: views.port(inv.get_port(s, ctx, port_id)))


@PORTS.update
async def update_port(port_id: str, request: Request, ctx: Caller) -> Any:
    inv = _inventory(request)
    return await update_item(request, "port", lambda uow, data: views.port(
        inv.update_port(uow, ctx, port_id, data)))


@PORTS.delete
async def delete_port(port_id: str, request: Request, ctx: Caller) -> Response:
    inv = _inventory(request)
    await write(request, lambda uow: inv.delete_port(uow, ctx, port_id))
    return Response(status_code=204)


@router.post("/ports/{port_id}/sync", status_code=204, response_model=None,
             responses=answers(204), openapi_extra={"requestBody": {
                 "required": False, "description": "none; anything sent is ignored",
                 "content": {"application/json": {"schema": {"type": "object"}}}}})
async def sync_port(port_id: str, request: Request, ctx: Caller) -> Response:
    """Re-read port `port_id` from the port backend now (with Neutron: taas's Neutron plugin
    calls this when Neutron deletes a port, so that its tap resources are gone before Neutron
    answers). Any authenticated caller: nothing but the id is taken from the request, and taas
    asks its source with its own credentials."""
    try:
        uuid.UUID(port_id)
    except ValueError:
        raise errors.InvalidInput(f"Invalid port id {port_id!r}") from None
    await run_in_threadpool(_inventory(request).sync_port, port_id)
    return Response(status_code=204)
