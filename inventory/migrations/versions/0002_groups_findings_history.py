"""asset groups, finding acknowledgement, daily history, derivation state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

from rolecall.inventory.sql.column_types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "asset_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address", "name", name="uq_asset_group"),
    )
    op.create_index("ix_asset_group_name", "asset_group", ["name"], unique=False)
    op.create_table(
        "daily_metric",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("grp", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("metric", "grp", "day", name="uq_daily_metric"),
    )
    op.create_table(
        "derive_state",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.add_column("finding", sa.Column("note", sa.Text(), nullable=False, server_default=""))
    op.add_column("finding", sa.Column("acknowledged", UTCDateTime(), nullable=True))
    op.create_index("ix_role_role", "role", ["role"], unique=False)
    op.create_index("ix_smtp_ts", "smtp", ["ts"], unique=False)
    op.create_index("ix_socks_client", "socks", ["client"], unique=False)
    op.create_index("ix_socks_proxy", "socks", ["proxy"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_socks_proxy", table_name="socks")
    op.drop_index("ix_socks_client", table_name="socks")
    op.drop_index("ix_smtp_ts", table_name="smtp")
    op.drop_index("ix_role_role", table_name="role")
    with op.batch_alter_table("finding") as batch:
        batch.drop_column("acknowledged")
        batch.drop_column("note")
    op.drop_table("derive_state")
    op.drop_table("daily_metric")
    op.drop_index("ix_asset_group_name", table_name="asset_group")
    op.drop_table("asset_group")
