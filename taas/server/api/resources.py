"""Neutron-style CRUD routers for tap resources and the port inventory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from taas.server.api import views
from taas.server.api.auth import Caller
from taas.server.api.common import (
    Converter,
    host_filter,
    json_body,
    list_query,
    page_links,
    read,
    select_fields,
    to_bool,
    to_int,
    unwrap,
    write,
)


@dataclass
class Resource:
    singular: str
    plural: str
    path: str
    view: Callable[[Any], dict[str, Any]]
    filters: dict[str, tuple[str, Converter]]
    bulk: bool
    service: Callable[[Request], Any]  # the service object holding the methods below
    prefix: str  # method names: create_<prefix>, get_<prefix>, list_<prefix>s, ...


def _s(column: str) -> tuple[str, Converter]:
    return (column, str)


OWNED = {"id": _s("id"), "name": _s("name"), "description": _s("description"),
         "tenant_id": _s("project_id"), "project_id": _s("project_id")}


def add_routes(router: APIRouter, res: Resource) -> None:
    def svc(request: Request, op: str) -> Callable[..., Any]:
        return getattr(res.service(request), op)

    @router.post(res.path, status_code=201, name=f"create_{res.singular}")
    async def create(request: Request, ctx: Caller) -> Any:
        body, bulk = unwrap(await json_body(request), res.singular,
                            res.plural if res.bulk else None)
        create_one = svc(request, f"create_{res.prefix}")
        if bulk:
            items = await write(
                request, lambda uow: [res.view(create_one(uow, ctx, b)) for b in body]
            )
            return {res.plural: items}
        item = await write(request, lambda uow: res.view(create_one(uow, ctx, body)))
        return {res.singular: item}

    @router.get(res.path, name=f"list_{res.plural}")
    async def list_(request: Request, ctx: Caller) -> Any:
        q = list_query(request, res.filters)
        list_fn = svc(request, f"list_{res.prefix}s")
        def run(session: Any) -> tuple[list[dict[str, Any]], bool]:
            rows, more = list_fn(session, ctx, q)
            return [res.view(r) for r in rows], more

        items, more = await read(request, run)
        out: dict[str, Any] = {res.plural: [select_fields(request, i) for i in items]}
        out.update(page_links(request, res.plural, q, items, more))
        return out

    @router.get(res.path + "/{id_}", name=f"get_{res.singular}")
    async def get(id_: str, request: Request, ctx: Caller) -> Any:
        get_fn = svc(request, f"get_{res.prefix}")
        item = await read(request, lambda s: res.view(get_fn(s, ctx, id_)))
        return {res.singular: select_fields(request, item)}

    @router.put(res.path + "/{id_}", name=f"update_{res.singular}")
    async def update(id_: str, request: Request, ctx: Caller) -> Any:
        body, _ = unwrap(await json_body(request), res.singular)
        update_fn = svc(request, f"update_{res.prefix}")
        item = await write(request, lambda uow: res.view(update_fn(uow, ctx, id_, body)))
        return {res.singular: item}

    @router.delete(res.path + "/{id_}", status_code=204, name=f"delete_{res.singular}")
    async def delete(id_: str, request: Request, ctx: Caller) -> Response:
        delete_fn = svc(request, f"delete_{res.prefix}")
        await write(request, lambda uow: delete_fn(uow, ctx, id_))
        return Response(status_code=204)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v2.0")
    taps = lambda request: request.app.state.taps  # noqa: E731
    inventory = lambda request: request.app.state.inventory  # noqa: E731
    resources = [
        Resource("tap_service", "tap_services", "/taas/tap_services", views.tap_service,
                 {**OWNED, "port_id": _s("port_id"), "status": _s("status")},
                 True, taps, "tap_service"),
        Resource("tap_flow", "tap_flows", "/taas/tap_flows", views.tap_flow,
                 {**OWNED, "tap_service_id": _s("tap_service_id"),
                  "source_port": _s("source_port"), "direction": _s("direction"),
                  "vlan_filter": _s("vlan_filter"), "status": _s("status")},
                 True, taps, "tap_flow"),
        Resource("tap_mirror", "tap_mirrors", "/taas/tap_mirrors", views.tap_mirror,
                 {**OWNED, "port_id": _s("port_id"), "remote_ip": _s("remote_ip"),
                  "mirror_type": _s("mirror_type"), "status": _s("status")},
                 False, taps, "tap_mirror"),
        Resource("network", "networks", "/networks", views.network,
                 {**OWNED, "provider:segmentation_id": ("segmentation_id", to_int),
                  "admin_state_up": ("admin_state_up", to_bool)},
                 False, inventory, "network"),
        Resource("port", "ports", "/ports", views.port,
                 {**OWNED, "network_id": _s("network_id"), "mac_address": _s("mac_address"),
                  "binding:host_id": ("host", host_filter), "device_owner": _s("device_owner"),
                  "device_id": _s("device_id"), "admin_state_up": ("admin_state_up", to_bool)},
                 False, inventory, "port"),
    ]
    for res in resources:
        add_routes(router, res)
    return router
