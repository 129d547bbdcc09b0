"""schedule sensor: an ingest schedule bound to one sensor's daemon (rolecall run --sensor)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00.000000

"" is the central daemon's, as every schedule stored before was.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sensor", sa.String(), server_default="", nullable=False))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_column("sensor")
