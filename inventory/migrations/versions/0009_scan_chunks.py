"""scan chunks queued to site workers (rolecall worker --site)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

from rolecall.inventory.sql.column_types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "scan_chunk",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(), nullable=False),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("addresses", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("worker", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("queued", UTCDateTime(), nullable=False),
        sa.Column("started", UTCDateTime(), nullable=True),
        sa.Column("ended", UTCDateTime(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "position", name="uq_scan_chunk"),
    )
    op.create_index("ix_scan_chunk_state", "scan_chunk", ["state"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_scan_chunk_state", table_name="scan_chunk")
    op.drop_table("scan_chunk")
