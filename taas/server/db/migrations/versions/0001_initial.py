"""Initial schema: inventory, tap resources, agents and their reports.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    revision_table = sa.table("revision", sa.column("id"), sa.column("value"))
    op.bulk_insert(revision_table, [{"id": 1, "value": 1}])
    op.create_table(
        "networks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("segmentation_id", sa.Integer, nullable=False, unique=True),
        sa.Column("admin_state_up", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("mac_address", sa.String(17), nullable=False),
        sa.Column("host", sa.String(255), nullable=True, index=True),
        sa.Column("device_owner", sa.String(255), nullable=False),
        sa.Column("device_id", sa.String(255), nullable=False),
        sa.Column("admin_state_up", sa.Boolean, nullable=False),
        sa.Column("fixed_ips", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("network_id", "mac_address", name="uq_port_net_mac"),
    )
    op.create_table(
        "tap_services",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("port_id", sa.String(36), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("taas_id", sa.Integer, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tap_flows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("tap_service_id", sa.String(36),
                  sa.ForeignKey("tap_services.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("source_port", sa.String(36), nullable=False, index=True),
        sa.Column("direction", sa.String(4), nullable=False),
        sa.Column("vlan_filter", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tap_mirrors",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("port_id", sa.String(36), nullable=False, index=True),
        sa.Column("directions", sa.JSON, nullable=False),
        sa.Column("remote_ip", sa.String(64), nullable=False),
        sa.Column("mirror_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tap_mirror_tunnels",
        sa.Column("tunnel_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tap_mirror_id", sa.String(36),
                  sa.ForeignKey("tap_mirrors.id", ondelete="CASCADE"), nullable=False, index=True),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, unique=True),
        sa.Column("tunnel_ip", sa.String(64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("reported_revision", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "agent_held_resources",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("resource_id", sa.String(36), primary_key=True, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=True),
    )
    op.create_table(
        "agent_held_taas_ids",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("taas_id", sa.Integer, primary_key=True, autoincrement=False, index=True),
    )


def downgrade() -> None:
    for table in ("agent_held_taas_ids", "agent_held_resources", "agents", "tap_mirror_tunnels",
                  "tap_mirrors", "tap_flows", "tap_services", "ports", "networks", "revision"):
        op.drop_table(table)
