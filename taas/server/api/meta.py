"""Version discovery and the extension list (what openstacksdk probes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from taas.server.api import schemas
from taas.server.api.auth import Caller
from taas.server.api.openapi import answers
from taas.server.services.errors import NotFound

router = APIRouter()
UPDATED = "2026-01-01T00:00:00-00:00"
EXTENSIONS = [
    ("taas", "Tap as a Service", "Mirror the traffic of ports to a tap service's port."),
    ("taas-vlan-filter", "VLAN filtering for tap flows",
     "Tap flows may mirror only frames of selected VLAN ids (vlan_filter)."),
    ("tap-mirror", "Tap mirrors", "Mirror a port's traffic to a remote IP in GRE or ERSPAN v1."),
    ("tap-mirror-both-direction", "Tap mirrors in both directions",
     "A tap mirror may use the BOTH direction with a single tunnel id."),
    ("quotas", "Quota management support", "Per-project limits of tap resources."),
    ("quota_details", "Quota details management support",
     "Limit and usage of each quota (/v2.0/quotas/{project_id}/details)."),
    ("taas-tap-filter", "Tap filters",
     "Ordered mirror/skip rules on protocol, CIDRs and ports that tap flows name "
     "(tap_filter_id), applied on the source host."),
    # Named so that neutron-server (taas/neutron_plugin) declares the same attributes.
    ("taas-limits", "Tap-as-a-Service limits and statistics",
     "snaplen, max_pps and max_kbps of tap resources, and their counters (statistics)."),
]


def _base(request: Request) -> str:
    """The configured public endpoint: a Host header must not steer clients elsewhere."""
    return request.app.state.settings.endpoint


@router.get("/", response_model=None, responses=answers(200, schemas.Versions, ()))
async def versions(request: Request) -> Any:
    return {"versions": [{"id": "v2.0", "status": "CURRENT",
                          "links": [{"rel": "self", "href": f"{_base(request)}/v2.0/"}]}]}


@router.get("/v2.0/", response_model=None, responses=answers(200, schemas.Collections, ()))
@router.get("/v2.0", include_in_schema=False)
async def v2(request: Request) -> Any:
    base = f"{_base(request)}/v2.0"
    names = [("network", "networks"), ("port", "ports"), ("agent", "agents"),
             ("tap_service", "taas/tap_services"), ("tap_flow", "taas/tap_flows"),
             ("tap_mirror", "taas/tap_mirrors"), ("tap_filter", "taas/tap_filters"),
             ("extension", "extensions")]
    return {"resources": [
        {"name": name, "collection": path.split("/")[-1],
         "links": [{"rel": "self", "href": f"{base}/{path}"}]}
        for name, path in names
    ]}


def _extension(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED,
            "links": []}


@router.get("/v2.0/extensions", response_model=None,
            responses=answers(200, schemas.Extensions, (401, 403)))
async def extensions(_ctx: Caller) -> Any:
    return {"extensions": [_extension(*e) for e in EXTENSIONS]}


@router.get("/v2.0/extensions/{alias}", response_model=None,
            responses=answers(200, schemas.ExtensionAnswer, (401, 403, 404)))
async def extension(alias: str, _ctx: Caller) -> Any:
    for e in EXTENSIONS:
        if e[0] == alias:
            return {"extension": _extension(*e)}
    raise NotFound(f"Extension {alias} not supported")
