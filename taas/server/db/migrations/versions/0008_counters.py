"""Counters (issue 10): each tap resource's accumulated counters, the agents' counter report
sequence and sync durations.

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

TAP_TABLES = ("tap_services", "tap_flows", "tap_mirrors")


def upgrade() -> None:
    for table in TAP_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("counters", sa.JSON, nullable=True))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("counters_boot", sa.String(64), nullable=True))
        batch.add_column(sa.Column("counters_seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("sync_stats", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("sync_stats")
        batch.drop_column("counters_seq")
        batch.drop_column("counters_boot")
    for table in TAP_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("counters")
