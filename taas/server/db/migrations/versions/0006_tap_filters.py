"""Tap filters (issue 10): the tap_filters table and a tap flow's optional tap_filter_id.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tap_filters",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), index=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("default_action", sa.String(8), nullable=False),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    with op.batch_alter_table("tap_flows") as batch:
        batch.add_column(sa.Column("tap_filter_id", sa.String(36), nullable=True))
        batch.create_index("ix_tap_flows_tap_filter_id", ["tap_filter_id"])


def downgrade() -> None:
    with op.batch_alter_table("tap_flows") as batch:
        batch.drop_index("ix_tap_flows_tap_filter_id")
        batch.drop_column("tap_filter_id")
    op.drop_table("tap_filters")
