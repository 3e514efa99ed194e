"""The five Neutron routes of one resource, as decorators: each knows its method, path,
status and OpenAPI description, so the decorated function is only the route's own code (which
still names the service method it calls)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter

from taas.server.api.common import Converter
from taas.server.api.openapi import answers, body, list_query
from taas.server.api.schemas import Models

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CrudRoutes:
    router: APIRouter
    path: str  # the collection, e.g. "/taas/tap_services"
    item_id: str  # the path parameter naming one item, e.g. "tap_service_id"
    models: Models
    filters: dict[str, tuple[str, Converter]]

    @property
    def _item(self) -> str:
        return f"{self.path}/{{{self.item_id}}}"

    def create(self, fn: F) -> F:
        return self.router.post(self.path, status_code=201, response_model=None,
                                responses=answers(201, self.models.created()),
                                openapi_extra=body(*self.models.creates()))(fn)

    def list(self, fn: F) -> F:
        return self.router.get(self.path, response_model=None,
                               responses=answers(200, self.models.list),
                               openapi_extra=list_query(self.filters))(fn)

    def show(self, fn: F) -> F:
        return self.router.get(self._item, response_model=None,
                               responses=answers(200, self.models.one))(fn)

    def update(self, fn: F) -> F:
        return self.router.put(self._item, response_model=None,
                               responses=answers(200, self.models.one),
                               openapi_extra=body(self.models.update))(fn)

    def delete(self, fn: F) -> F:
        return self.router.delete(self._item, status_code=204, response_model=None,
                                  responses=answers(204))(fn)
