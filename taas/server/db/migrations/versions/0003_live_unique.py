"""Partial unique indexes: one live tap service per destination port, one live tap flow per
(source port, tap service). The checks before the inserts alone let concurrent creates on
PostgreSQL both pass.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = sa.text("status <> 'PENDING_DELETE'")


def upgrade() -> None:
    op.create_index("uq_tap_services_live_port", "tap_services", ["port_id"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("uq_tap_flows_live_pair", "tap_flows", ["source_port", "tap_service_id"],
                    unique=True, sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("uq_tap_flows_live_pair", table_name="tap_flows")
    op.drop_index("uq_tap_services_live_port", table_name="tap_services")
