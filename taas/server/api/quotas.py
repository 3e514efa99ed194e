"""Neutron's quota API for the tap resources: /v2.0/quotas[/{project_id}[/details|/default]]."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from taas.server.api.auth import Caller
from taas.server.api.common import json_body, read, unwrap, write
from taas.server.api.openapi import answers, body
from taas.server.api.schemas import Answer, Strict, absent
from taas.server.services.errors import InvalidInput

router = APIRouter(prefix="/v2.0")

# ---- the documented shapes (/openapi.json) -------------------------------------------------

Limit = Annotated[int, Field(ge=-1, le=2**31 - 1, description="-1: unlimited")]


class QuotaLimits(Answer):
    tap_service: int
    tap_flow: int
    tap_mirror: int
    tap_filter: int
    tap_filter_rule: int


class ProjectQuota(QuotaLimits):
    project_id: str
    tenant_id: str


class QuotaUsage(Answer):
    limit: int
    used: int
    reserved: int


class QuotaDetails(Answer):
    tap_service: QuotaUsage
    tap_flow: QuotaUsage
    tap_mirror: QuotaUsage
    tap_filter: QuotaUsage
    tap_filter_rule: QuotaUsage


class QuotaSet(Strict):
    tap_service: Limit = absent()
    tap_flow: Limit = absent()
    tap_mirror: Limit = absent()
    tap_filter: Limit = absent()
    tap_filter_rule: Limit = absent()


class QuotaUpdateRequest(Strict):
    quota: QuotaSet


class QuotaAnswer(Answer):
    quota: QuotaLimits


class QuotaDetailsAnswer(Answer):
    quota: QuotaDetails


class QuotaList(Answer):
    quotas: list[ProjectQuota]



def _project(project_id: str) -> str:
    # Older clients append the format (`/quotas/<id>.json`), as Neutron still accepts.
    project_id = project_id.removesuffix(".json")
    if not project_id or len(project_id) > 255:
        raise InvalidInput("A project id of 1 to 255 characters is required")
    return project_id


def _quotas(request: Request) -> Any:
    return request.app.state.quotas


@router.get("/quotas", response_model=None, responses=answers(200, QuotaList))
async def list_quotas(request: Request, ctx: Caller) -> Any:
    svc = _quotas(request)
    return {"quotas": await read(request, lambda s: svc.list(s, ctx))}


@router.get("/quotas/{project_id}", response_model=None, responses=answers(200, QuotaAnswer))
async def show_quota(project_id: str, request: Request, ctx: Caller) -> Any:
    svc, project = _quotas(request), _project(project_id)
    return {"quota": await read(request, lambda s: svc.show(s, ctx, project))}


@router.get("/quotas/{project_id}/default", response_model=None,
            responses=answers(200, QuotaAnswer))
async def show_default_quota(project_id: str, request: Request, ctx: Caller) -> Any:
    svc, project = _quotas(request), _project(project_id)
    await read(request, lambda s: svc.show(s, ctx, project))  # the same policy as show
    return {"quota": svc.defaults()}


@router.get("/quotas/{project_id}/details", response_model=None,
            responses=answers(200, QuotaDetailsAnswer))
@router.get("/quotas/{project_id}/details.json", include_in_schema=False)  # openstacksdk's
async def show_quota_details(project_id: str, request: Request, ctx: Caller) -> Any:
    svc, project = _quotas(request), _project(project_id)
    return {"quota": await read(request, lambda s: svc.details(s, ctx, project))}


@router.put("/quotas/{project_id}", response_model=None, responses=answers(200, QuotaAnswer),
            openapi_extra=body(QuotaUpdateRequest))
async def update_quota(project_id: str, request: Request, ctx: Caller) -> Any:
    svc, project = _quotas(request), _project(project_id)
    body, _ = unwrap(await json_body(request), "quota")
    return {"quota": await write(request, lambda uow: svc.update(uow, ctx, project, body))}


@router.delete("/quotas/{project_id}", status_code=204, response_model=None,
               responses=answers(204))
async def reset_quota(project_id: str, request: Request, ctx: Caller) -> Response:
    svc, project = _quotas(request), _project(project_id)
    await write(request, lambda uow: svc.reset(uow, ctx, project))
    return Response(status_code=204)
