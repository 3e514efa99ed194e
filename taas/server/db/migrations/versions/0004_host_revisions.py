"""Per-host revisions (a change bumps only the hosts it concerns), the revision at which a
deleted resource left its hosts' states, the agents' last port-set and report digests; the
unused created_revision goes.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("tap_services", "tap_flows", "tap_mirrors")


def upgrade() -> None:
    op.create_table(
        "host_revisions",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_revision")
            batch.add_column(sa.Column("retired_revision", sa.BigInteger, nullable=True))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("ports_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("report_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("report_digest")
        batch.drop_column("ports_digest")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retired_revision")
            batch.add_column(sa.Column("created_revision", sa.BigInteger, nullable=False,
                                       server_default="0"))
    op.drop_table("host_revisions")
