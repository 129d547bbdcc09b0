"""schedules as plain data in their own table, converted from APScheduler's pickled jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from rolecall.inventory.migrations.legacy_jobs import LEGACY_TABLE, convert_legacy_jobs
from rolecall.inventory.sql.column_types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "schedule",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(), nullable=False),
        sa.Column("every", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("next_run", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    connection = op.get_bind()
    # A row that cannot be converted stays (and is logged); once none is left the pickles
    # go, so nothing is left that loading could turn into running code.
    if sa.inspect(connection).has_table(LEGACY_TABLE) and convert_legacy_jobs(connection) == 0:
        op.drop_table(LEGACY_TABLE)


def downgrade() -> None:
    """Revert this revision (the schedules are lost: 0003 kept them as APScheduler pickles)."""
    op.drop_table("schedule")
