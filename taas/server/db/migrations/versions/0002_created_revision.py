"""Tap resources remember the revision that created them.

A host whose agent last reported an older revision may be installing the resource right now,
so the resource cannot be deleted at once on its word.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("tap_services", "tap_flows", "tap_mirrors")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("created_revision", sa.BigInteger, nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_revision")
