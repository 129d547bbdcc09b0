"""HTTP CONNECT requests, and the link of a proxy's outgoing mail to the client it carries

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 06:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from rolecall.inventory.sql.column_types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "connect",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("client_port", sa.Integer(), nullable=False),
        sa.Column("proxy", sa.String(), nullable=False),
        sa.Column("proxy_port", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("password", sa.String(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("request_host", sa.String(), nullable=False),
        sa.Column("request_port", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "ts", "client", "client_port", "proxy", "proxy_port", "source", name="uq_connect"
        ),
    )
    op.create_index("ix_connect_client", "connect", ["client"], unique=False)
    op.create_index("ix_connect_proxy", "connect", ["proxy"], unique=False)
    with op.batch_alter_table("smtp", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("relayed_for", sa.String(), server_default="", nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("smtp", schema=None) as batch_op:
        batch_op.drop_column("relayed_for")
    op.drop_index("ix_connect_proxy", table_name="connect")
    op.drop_index("ix_connect_client", table_name="connect")
    op.drop_table("connect")
