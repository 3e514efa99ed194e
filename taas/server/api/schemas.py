"""Pydantic models of the request and response bodies, for the OpenAPI document only.

Requests are still checked by services/validation.py (Neutron's attribute rules and messages);
these models describe the same rules, and tests/server/test_openapi.py runs schemathesis against
the document to keep both in step. Responses are what api/views.py builds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

UUID = Annotated[str, Field(json_schema_extra={"format": "uuid"}, min_length=36,
                            max_length=36)]
Name = Annotated[str, Field(max_length=255)]
Description = Annotated[str, Field(max_length=1024)]
Project = Annotated[str, Field(max_length=255)]
Status = Literal["ACTIVE", "DOWN", "ERROR", "PENDING_DELETE"]
Direction = Literal["IN", "OUT", "BOTH"]
VLAN_FILTER = r"^([0-9]+(-[0-9]+)?)(,([0-9]+(-[0-9]+)?))*$"
TunnelId = (Annotated[int, Field(ge=0, le=2**32 - 1)]
            | Annotated[str, Field(pattern=r"^\s*\+?[0-9]+\s*$", max_length=32)])
Bool = bool | Literal["true", "false", "True", "False"]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(**kwargs: Any) -> Any:
    """An optional attribute that must not be null when given (the validators refuse null)."""
    return Field(None, json_schema_extra=_drop_default, **kwargs)


class Strict(BaseModel):
    """A request object: unknown attributes are 400."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Answer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ---- errors ---------------------------------------------------------------------------------

class ErrorBody(Answer):
    type: str = Field(description="Neutron's error type, e.g. TapServiceNotFound")
    message: str
    detail: str


class NeutronError(Answer):
    NeutronError: ErrorBody


class Link(Answer):
    rel: Literal["next", "previous", "self"]
    href: str


# ---- discovery ------------------------------------------------------------------------------

class Version(Answer):
    id: str
    status: str
    links: list[Link]


class Versions(Answer):
    versions: list[Version]


class Collection(Answer):
    name: str
    collection: str
    links: list[Link]


class Collections(Answer):
    resources: list[Collection]


class Extension(Answer):
    alias: str
    name: str
    description: str
    updated: str
    links: list[Link]


class Extensions(Answer):
    extensions: list[Extension]


class ExtensionAnswer(Answer):
    extension: Extension


# ---- tap resources --------------------------------------------------------------------------

class Owned(Answer):
    id: UUID
    tenant_id: str
    project_id: str
    name: str
    description: str


class TapServiceStatistics(Answer):
    delivered_packets: int
    delivered_bytes: int
    dropped_packets: int
    updated_at: str | None


class TapFlowStatistics(Answer):
    mirrored_packets: int
    mirrored_bytes: int
    filtered_packets: int
    dropped_packets: int
    updated_at: str | None


class TapMirrorDirectionStatistics(Answer):
    sent_packets: int
    sent_bytes: int
    dropped_packets: int


class TapMirrorStatistics(Answer):
    IN: TapMirrorDirectionStatistics | None = absent()
    OUT: TapMirrorDirectionStatistics | None = absent()
    BOTH: TapMirrorDirectionStatistics | None = absent()
    updated_at: str | None


# Limits of a tap resource's copies (issue 10): null = whole frames / unlimited.
Snaplen = Annotated[int, Field(ge=64, le=65535)] | None
Rate = Annotated[int, Field(ge=1, le=2**32 - 1)] | None
SNAPLEN_DOC = "Bytes of each copy kept (64-65535); null: whole frames"
PPS_DOC = "Ceiling on the copies in packets/s; null: unlimited"
KBPS_DOC = "Ceiling on the copies in kbit/s; null: unlimited"


class Limits(Answer):
    max_pps: int | None
    max_kbps: int | None


class TapService(Owned, Limits):
    port_id: UUID
    status: Status
    statistics: TapServiceStatistics | None = Field(
        None, description="counters (docs/api.md, Statistics); read-only")


class TapFlow(Owned, Limits):
    tap_service_id: UUID
    source_port: UUID
    direction: Direction
    status: Status
    vlan_filter: str | None
    tap_filter_id: UUID | None
    snaplen: int | None
    statistics: TapFlowStatistics | None = Field(
        None, description="counters (docs/api.md, Statistics); read-only")


class TapMirror(Owned, Limits):
    port_id: UUID
    directions: dict[Direction, int]
    remote_ip: str
    mirror_type: Literal["gre", "erspanv1"]
    status: Status
    snaplen: int | None
    statistics: TapMirrorStatistics | None = Field(
        None, description="counters per direction (docs/api.md, Statistics); read-only")


class OwnedCreate(Strict):
    name: Name = ""
    description: Description = ""
    tenant_id: Project = absent()
    project_id: Project = absent()


class NameUpdate(Strict):
    name: Name = ""
    description: Description = ""


class LimitsUpdate(Strict):
    max_pps: Rate = Field(None, description=PPS_DOC)
    max_kbps: Rate = Field(None, description=KBPS_DOC)


class SnaplenUpdate(LimitsUpdate):
    snaplen: Snaplen = Field(None, description=SNAPLEN_DOC)


class TapServiceUpdate(NameUpdate, LimitsUpdate):
    pass


class TapMirrorUpdate(NameUpdate, SnaplenUpdate):
    pass


class TapServiceCreate(OwnedCreate, LimitsUpdate):
    port_id: UUID


class TapFlowCreate(OwnedCreate, SnaplenUpdate):
    tap_service_id: UUID
    source_port: UUID
    direction: Direction
    vlan_filter: Annotated[str, Field(pattern=VLAN_FILTER, max_length=1024)] | None = Field(
        None, description="VLAN ids and ranges (0..4094, low <= high), e.g. '10-20,30'")
    tap_filter_id: UUID | None = Field(None, description="A tap filter of the same project")


class TapMirrorCreate(OwnedCreate, SnaplenUpdate):
    port_id: UUID
    directions: Annotated[dict[Direction, TunnelId], Field(min_length=1)] = Field(
        description="A tunnel id per direction, each used once across every tap mirror")
    remote_ip: Annotated[str, Field(max_length=64)] = Field(
        description="Unicast IPv4/IPv6 of the collector: not unspecified, loopback, "
        "multicast, broadcast, link-local, nor an agent's tunnel IP")
    mirror_type: Literal["gre", "erspanv1"]


FilterAction = Literal["mirror", "skip"]
PORT_RANGE = r"^[0-9]{1,5}(-[0-9]{1,5})?$"


class FilterRule(Strict):
    priority: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="Unique in the filter; the matching rule with the lowest number decides")
    action: FilterAction
    direction: Literal["IN", "OUT"] | None = Field(None, description="null: both")
    ethertype: Literal["IPv4", "IPv6"] | None = None
    protocol: Literal["tcp", "udp", "icmp", "icmpv6"] | Annotated[int, Field(ge=0, le=255)] \
        | None = None
    source_ip_prefix: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="CIDR, of the rule's ethertype")
    destination_ip_prefix: Annotated[str, Field(max_length=64)] | None = None
    source_port_range: Annotated[str, Field(pattern=PORT_RANGE)] | None = Field(
        None, description='"N" or "N-M" (0-65535), protocol tcp or udp only')
    destination_port_range: Annotated[str, Field(pattern=PORT_RANGE)] | None = None


class FilterRuleAnswer(Answer):
    priority: int
    action: FilterAction
    direction: Literal["IN", "OUT"] | None
    ethertype: Literal["IPv4", "IPv6"] | None
    protocol: str | None
    source_ip_prefix: str | None
    destination_ip_prefix: str | None
    source_port_range: str | None
    destination_port_range: str | None


class TapFilter(Owned):
    default_action: FilterAction
    rules: list[FilterRuleAnswer]


class TapFilterUpdate(NameUpdate):
    default_action: FilterAction = "skip"
    rules: Annotated[list[FilterRule], Field(max_length=100)] = []


class TapFilterCreate(TapFilterUpdate):
    tenant_id: Project = absent()
    project_id: Project = absent()


class TapFlowUpdate(NameUpdate, SnaplenUpdate):
    tap_filter_id: UUID | None = Field(None, description="A tap filter of the same project; "
                                       "null: every frame")


# ---- inventory ------------------------------------------------------------------------------

class Network(Owned):
    network_type: Literal["vxlan"] = Field(alias="provider:network_type")
    segmentation_id: int = Field(alias="provider:segmentation_id")
    physical_network: None = Field(alias="provider:physical_network")
    status: Literal["ACTIVE"]
    admin_state_up: bool
    shared: Literal[False]
    subnets: list[str]
    created_at: str | None


class FixedIp(Strict):
    ip_address: str = absent()
    subnet_id: Annotated[str, Field(max_length=36)] = absent()


class FixedIpAnswer(Answer):
    ip_address: str | None = None
    subnet_id: str | None = None


class Port(Owned):
    network_id: UUID
    mac_address: str
    host_id: str = Field(alias="binding:host_id")
    device_owner: str
    device_id: str
    status: Literal["ACTIVE", "DOWN"]
    admin_state_up: bool
    fixed_ips: list[FixedIpAnswer]
    created_at: str | None


class NetworkCreate(OwnedCreate):
    id: UUID = absent()
    admin_state_up: Bool = True
    shared: Literal[False] = False
    network_type: Literal["vxlan"] = Field("vxlan", alias="provider:network_type")
    segmentation_id: Annotated[int, Field(ge=1, le=2**24 - 1)] = absent(
        alias="provider:segmentation_id",
        description="VXLAN VNI; outside the range reserved for tap services")
    physical_network: None = Field(None, alias="provider:physical_network")


class NetworkUpdate(NameUpdate):
    admin_state_up: Bool = True


MAC = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")]


class PortUpdate(NameUpdate):
    host_id: Annotated[str, Field(max_length=255)] | None = Field(None, alias="binding:host_id")
    device_owner: Name = ""
    device_id: Name = ""
    admin_state_up: Bool = True
    fixed_ips: list[FixedIp] = []


class PortCreate(PortUpdate):
    id: UUID = absent()
    tenant_id: Project = absent()
    project_id: Project = absent()
    network_id: UUID
    mac_address: MAC = absent()


# ---- agents ---------------------------------------------------------------------------------

class AgentConfig(Answer):
    tunnel_ip: str | None


class Agent(Answer):
    id: UUID
    host: str
    agent_type: Literal["TaaS agent"]
    binary: Literal["taas-agent"]
    configurations: AgentConfig
    alive: bool
    admin_state_up: bool
    heartbeat_timestamp: str | None
    created_at: str | None
    reported_revision: int | None


class AgentRegistration(Strict):
    tunnel_ip: Annotated[str, Field(max_length=64)] | None = None


class AgentPort(BaseModel):
    port_id: Annotated[str, Field(min_length=1, max_length=255)]


class CountersAnswer(Answer):
    host: str
    seq: int
    accepted: int = Field(description="resources whose counters the report updated")


class HostReportAnswer(Answer):
    host: str
    revision: int
    accepted: int
    taas_ids: list[int]


# ---- envelopes ------------------------------------------------------------------------------

def envelope(name: str, key: str, inner: Any, links: bool = False,
             extra: dict[str, Any] | None = None) -> type[BaseModel]:
    """A model `{key: inner}` (Neutron's envelope), optionally with `<key>_links` (pages) and
    other required members."""
    fields: dict[str, Any] = {key: (inner, ...)}
    if links:
        fields[f"{key}_links"] = (list[Link], absent())
    for member, annotation in (extra or {}).items():
        fields[member] = (annotation, ...)
    return create_model(name, __base__=Answer, **fields)


def request_envelope(name: str, key: str, inner: Any) -> type[BaseModel]:
    return create_model(name, __base__=Strict, **{key: (inner, ...)})


class Models:
    """The request and answer models of one Neutron resource's five routes."""

    def __init__(self, singular: str, plural: str, item: type[BaseModel],
                 create: type[BaseModel], update: type[BaseModel], bulk: bool) -> None:
        title = "".join(w.capitalize() for w in singular.split("_"))
        self.one = envelope(f"{title}Answer", singular, item)
        self.list = envelope(f"{title}List", plural, list[item], links=True)  # type: ignore[valid-type]
        self.create = request_envelope(f"{title}CreateRequest", singular, create)
        self.update = request_envelope(f"{title}UpdateRequest", singular, update)
        self.bulk_create = self.bulk = None
        if bulk:
            self.bulk_create = request_envelope(
                f"{title}BulkCreateRequest", plural,
                Annotated[list[create], Field(min_length=1)])  # type: ignore[valid-type]
            self.bulk = envelope(f"{title}BulkAnswer", plural, list[item])  # type: ignore[valid-type]

    def creates(self) -> tuple[type[BaseModel], ...]:
        return (self.create,) + ((self.bulk_create,) if self.bulk_create else ())

    def created(self) -> Any:
        return self.one | self.bulk if self.bulk else self.one


TAP_SERVICE = Models("tap_service", "tap_services", TapService, TapServiceCreate,
                     TapServiceUpdate, bulk=True)
TAP_FLOW = Models("tap_flow", "tap_flows", TapFlow, TapFlowCreate, TapFlowUpdate, bulk=True)
TAP_FILTER = Models("tap_filter", "tap_filters", TapFilter, TapFilterCreate, TapFilterUpdate,
                    bulk=False)
TAP_MIRROR = Models("tap_mirror", "tap_mirrors", TapMirror, TapMirrorCreate, TapMirrorUpdate,
                    bulk=False)
NETWORK = Models("network", "networks", Network, NetworkCreate, NetworkUpdate, bulk=False)
PORT = Models("port", "ports", Port, PortCreate, PortUpdate, bulk=False)
