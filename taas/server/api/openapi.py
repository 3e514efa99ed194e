"""The OpenAPI 3 document (/openapi.json, /docs), generated from the routes and the models of
api/schemas.py.

Request bodies are parsed by hand (Neutron's messages), so FastAPI cannot see them: routes
declare them with `body(...)` and this module puts the models' JSON schemas into the document.
The agent API's routes (api/agents.py) are described here by path, beside the others."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from taas.common.desired_state import CountersReport, DesiredState, HostReport
from taas.server.api import schemas as s
from taas.server.api.common import MAX_BODY, RESERVED, Converter, to_bool, to_int

REF = "#/components/schemas/{model}"
_MODELS: dict[str, type[BaseModel]] = {}
PUBLIC = {"/", "/v2.0/"}  # no token needed
REQUEST_ID = {"X-Openstack-Request-Id": {
    "description": "req-<uuid4>, also in the server's log line of the request",
    "schema": {"type": "string", "pattern": "^req-[0-9a-f-]{36}$"}, "required": True}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    _MODELS[model.__name__] = model
    return {"$ref": REF.format(model=model.__name__)}


def body(*models: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route whose JSON body is one of `models`."""
    schema = _ref(models[0]) if len(models) == 1 else {"oneOf": [_ref(m) for m in models]}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema}}}}


ERRORS = (400, 401, 403, 404, 409, 413, 503)


def answers(status: int, model: Any = None, errors: tuple[int, ...] = ERRORS,
            ) -> dict[int | str, dict[str, Any]]:
    """`responses` of a route: its answer and Neutron's error body for each error status."""
    out: dict[int | str, dict[str, Any]] = {code: {"model": s.NeutronError} for code in errors}
    out[status] = {"model": model} if model is not None else {"description": "No content"}
    return out


def _param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            **({"description": description} if description else {})}


def list_query(filters: dict[str, tuple[str, Converter]]) -> dict[str, Any]:
    """`openapi_extra` of a list route: Neutron's filters, sort and page parameters (`fields=`
    also works: it trims each item to the named attributes)."""
    params = []
    for name, (_, convert) in filters.items():
        schema: dict[str, Any] = {"type": "string"}
        if convert is to_int:
            schema = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
        elif convert is to_bool:
            schema = {"type": "boolean"}
        params.append(_param(name, schema, "filter (repeat it for OR)"))
    keys = sorted(set(filters) | {"created_at"})
    params += [
        _param("sort_key", {"type": "string", "enum": keys}),
        _param("sort_dir", {"type": "string", "enum": ["asc", "desc"]},
               "one per sort_key, in the same order"),
        _param("limit", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
        _param("marker", {"type": "string"}, "id of the last item of the previous page"),
        _param("page_reverse", {"type": "boolean"}),
    ]
    assert {p["name"] for p in params} >= RESERVED - {"fields"}
    return {"parameters": params}


# ---- the agent API (routes in api/agents.py) ------------------------------------------------

_AGENT_ERRORS = (400, 401, 403, 404, 413, 503)
# The payloads are the shared contract's models (taas/common/desired_state.py).
_DESIRED = s.envelope("DesiredStateAnswer", "desired_state", DesiredState)
AGENT_OPERATIONS: dict[tuple[str, str], tuple[type[BaseModel] | None, Any]] = {
    ("/v2.0/taas-agents/{host}", "put"): (
        s.request_envelope("AgentRegistrationRequest", "agent", s.AgentRegistration),
        s.envelope("AgentAnswer", "agent", s.Agent)),
    ("/v2.0/taas-agents/{host}/ports", "put"): (
        s.request_envelope("AgentPortsRequest", "ports", list[s.AgentPort]),
        s.envelope("AgentPortsAnswer", "ports", list[s.Port], extra={"unknown": list[str]})),
    ("/v2.0/taas-agents/{host}/desired-state", "get"): (None, _DESIRED),
    ("/v2.0/taas-agents/{host}/report", "put"): (
        s.request_envelope("HostReportRequest", "report", HostReport),
        s.envelope("HostReportAnswerEnvelope", "report", s.HostReportAnswer)),
    ("/v2.0/taas-agents/{host}/counters", "put"): (
        s.request_envelope("CountersReportRequest", "counters", CountersReport),
        s.envelope("CountersAnswerEnvelope", "counters", s.CountersAnswer)),
    ("/v2.0/agents", "get"): (None, s.envelope("AgentList", "agents", list[s.Agent], True)),
    ("/v2.0/agents/{id_}", "get"): (None, s.envelope("AgentOne", "agent", s.Agent)),
    ("/v2.0/agents/{id_}", "delete"): (None, None),
}
_DESIRED_PARAMS = [
    _param("revision", {"type": "integer", "minimum": 0},
           "the revision the agent holds: answer when it changes (long-poll)"),
    _param("timeout", {"type": "number", "minimum": 0, "maximum": 60},
           "seconds to wait for a change (default 30)"),
]


def _describe_agent_api(doc: dict[str, Any], components: dict[str, Any]) -> None:
    for (path, method), (request, answer) in AGENT_OPERATIONS.items():
        op = doc["paths"].get(path, {}).get(method)
        if op is None:
            continue  # the route moved: test_openapi notices the gap
        if request is not None:
            op.update(body(request))
        status = "204" if method == "delete" else "200"
        responses: dict[str, Any] = {str(code): {
            "description": "Neutron error", "content": {"application/json": {
                "schema": {"$ref": REF.format(model="NeutronError")}}}}
            for code in _AGENT_ERRORS}
        if answer is None:
            responses[status] = {"description": "No content"}
        else:
            _MODELS[answer.__name__] = answer
            responses[status] = {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": REF.format(model=answer.__name__)}}}}
        op["responses"] = responses
        if path.endswith("desired-state"):
            op["parameters"] = [*op.get("parameters", []), *_DESIRED_PARAMS]
        elif path == "/v2.0/agents":
            op["parameters"] = [*op.get("parameters", []), *list_query(
                {"id": ("id", str), "host": ("host", str)})["parameters"]]
    components.setdefault("NeutronError", s.NeutronError.model_json_schema(ref_template=REF))


def _report_defaults(components: dict[str, Any]) -> None:
    """A report may leave out `host` and `revision`: the path names the host, 0 is the
    default revision."""
    report = components.get("HostReport", {})
    if "required" in report:
        report["required"] = [r for r in report["required"] if r not in ("host", "revision")]
    counters = components.get("CountersReport", {})
    if "required" in counters:
        counters["required"] = [r for r in counters["required"] if r != "host"]


# ---- the document ---------------------------------------------------------------------------

def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title="taas-server", version="2.0", routes=app.routes,
                          description="Tap-as-a-Service in Neutron's TaaS wire format, the "
                          "built-in port inventory and the agent API. Errors are "
                          "`{\"NeutronError\": {\"type\", \"message\", \"detail\"}}`; bodies "
                          f"over {MAX_BODY} bytes are 413; HEAD is answered wherever GET is.")
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        _describe_agent_api(doc, components)
        for name, model in list(_MODELS.items()):
            schema = model.model_json_schema(ref_template=REF, by_alias=True)
            components.update(schema.pop("$defs", {}))
            components[name] = schema
        _report_defaults(components)
        doc["components"]["securitySchemes"] = {"token": {
            "type": "apiKey", "in": "header", "name": "X-Auth-Token"}}
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)  # FastAPI's 422: never answered (400 instead)
        error = {"description": "Neutron error", "content": {"application/json": {
            "schema": {"$ref": REF.format(model="NeutronError")}}}}
        for path, item in doc["paths"].items():
            for op in item.values():
                op.get("responses", {}).pop("422", None)
                if path not in PUBLIC:
                    op["security"] = [{"token": []}]
                    # Any authenticated route may answer these (a route that says nothing
                    # about its errors still gets them documented).
                    for code in (400, 401, 403, 404, 413, 503):
                        op["responses"].setdefault(str(code), dict(error))
                for answer in op.get("responses", {}).values():
                    answer.setdefault("headers", {}).update(REQUEST_ID)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
