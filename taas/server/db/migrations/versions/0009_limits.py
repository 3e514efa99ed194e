"""Truncation and rate limits (issue 10): snaplen / max_pps / max_kbps of tap flows and tap
mirrors, max_pps / max_kbps of tap services (all nullable: null = whole frame / unlimited).
(Planned as 0007; numbered after 0008, which landed first.)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = {
    "tap_flows": ("snaplen", "max_pps", "max_kbps"),
    "tap_services": ("max_pps", "max_kbps"),
    "tap_mirrors": ("snaplen", "max_pps", "max_kbps"),
}


def upgrade() -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name in columns:
                # Rates go up to 2**32 - 1 (OpenFlow meter rates): wider than INTEGER.
                kind = sa.Integer() if name == "snaplen" else sa.BigInteger()
                batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name in columns:
                batch.drop_column(name)
