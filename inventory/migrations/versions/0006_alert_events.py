"""alert events and cursors: every change of a finding, and where each alert output stands

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 04:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from rolecall.inventory.sql.column_types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "alert_event",
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("techniques", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sequence"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "alert_cursor",
        sa.Column("output", sa.String(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("updated", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("error_at", UTCDateTime(), nullable=True),
        sa.Column("recent", sa.Text(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("held_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("output"),
    )


def downgrade() -> None:
    """Revert this revision (the events and the outputs' cursors are lost)."""
    op.drop_table("alert_cursor")
    op.drop_table("alert_event")
