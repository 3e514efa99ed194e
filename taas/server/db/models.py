"""SQLAlchemy 2 models of taas-server's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# A tap resource waiting for its hosts to confirm its deletion.
PENDING_DELETE = "PENDING_DELETE"
# Rows not being deleted (partial unique indexes apply to these only).
LIVE = text(f"status <> '{PENDING_DELETE}'")


class Revision(Base):
    """One row: the revision counter. Each write transaction that changes desired states
    takes the next value once and gives it to every host it changes (HostRevision)."""

    __tablename__ = "revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class HostRevision(Base):
    """A host's revision: the counter's value at the last change of its desired state."""

    __tablename__ = "host_revisions"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Owned:
    """The columns every tenant resource has, as Neutron names them."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Retiring:
    """A tap resource's status (as its hosts report it) and its retirement."""

    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    # The revision at which it left its hosts' states (PENDING_DELETE): deletion waits for
    # those hosts to report at least this revision.
    retired_revision: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # What its hosts' counters add up to, and the last raw value of each flow that counts
    # (services/counters.py); None until an agent reported any.
    counters: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Network(Owned, Base):
    __tablename__ = "networks"
    segmentation_id: Mapped[int] = mapped_column(Integer, unique=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)


class Port(Owned, Base):
    __tablename__ = "ports"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    mac_address: Mapped[str] = mapped_column(String(17))
    host: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    device_id: Mapped[str] = mapped_column(String(255), default="")
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    fixed_ips: Mapped[list] = mapped_column(JSON, default=list)
    __table_args__ = (UniqueConstraint("network_id", "mac_address", name="uq_port_net_mac"),)


class Limits:
    """Rate limits of a tap resource's copies (issue 10): null = unlimited."""

    max_pps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_kbps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TapService(Owned, Retiring, Limits, Base):
    __tablename__ = "tap_services"
    # No foreign key to ports: a row may outlive its port while agents confirm deletion.
    port_id: Mapped[str] = mapped_column(String(36), index=True)
    # Unique: the arbiter of concurrent allocations on every database.
    taas_id: Mapped[int] = mapped_column(Integer, unique=True)
    # One live tap service per destination port, enforced against concurrent creates.
    __table_args__ = (Index("uq_tap_services_live_port", "port_id", unique=True,
                            sqlite_where=LIVE, postgresql_where=LIVE),)


class TapFilter(Owned, Base):
    """Which frames the tap flows that name it copy: ordered rules (JSON, validated by
    services/validation.py) and a default action."""

    __tablename__ = "tap_filters"
    default_action: Mapped[str] = mapped_column(String(8), default="skip")
    rules: Mapped[list] = mapped_column(JSON, default=list)


class TapFlow(Owned, Retiring, Limits, Base):
    __tablename__ = "tap_flows"
    snaplen: Mapped[int | None] = mapped_column(Integer, nullable=True)  # null: whole frames
    tap_service_id: Mapped[str] = mapped_column(
        ForeignKey("tap_services.id", ondelete="CASCADE"), index=True
    )
    source_port: Mapped[str] = mapped_column(String(36), index=True)
    direction: Mapped[str] = mapped_column(String(4))
    vlan_filter: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # No foreign key: a PENDING_DELETE flow may outlive its filter (only live flows block
    # the filter's deletion); a missing filter is published as "copy nothing".
    tap_filter_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # One live flow per (source port, tap service), enforced against concurrent creates.
    __table_args__ = (Index("uq_tap_flows_live_pair", "source_port", "tap_service_id",
                            unique=True, sqlite_where=LIVE, postgresql_where=LIVE),)


class TapMirror(Owned, Retiring, Limits, Base):
    __tablename__ = "tap_mirrors"
    snaplen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_id: Mapped[str] = mapped_column(String(36), index=True)
    directions: Mapped[dict] = mapped_column(JSON)
    remote_ip: Mapped[str] = mapped_column(String(64))
    mirror_type: Mapped[str] = mapped_column(String(16))


class TapMirrorTunnel(Base):
    """One row per tunnel key a mirror uses: the unique key enforces conflicts globally."""

    __tablename__ = "tap_mirror_tunnels"
    tunnel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tap_mirror_id: Mapped[str] = mapped_column(
        ForeignKey("tap_mirrors.id", ondelete="CASCADE"), index=True
    )


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    tunnel_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    reported_revision: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Fingerprints of the last port set (only when all of it is bound here) and report the
    # server stored: the agent skips sending them again while they match.
    ports_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The agent process (boot) and sequence number of its last counters report: an older
    # report arriving late is ignored. sync_stats: its convergences, accumulated across boots.
    counters_boot: Mapped[str | None] = mapped_column(String(64), nullable=True)
    counters_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sync_stats: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class HeldResource(Base):
    """A resource an agent's last report says it holds on its host."""

    __tablename__ = "agent_held_resources"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class HeldTaasId(Base):
    """A taas_id an agent's last report found in its host's flows."""

    __tablename__ = "agent_held_taas_ids"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    taas_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)


class Quota(Base):
    """A project's limit for one resource where it differs from the configured default
    (Neutron's table: absent row = default; -1 = unlimited)."""

    __tablename__ = "quotas"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer, nullable=False)
