"""findings and alert events by address, for the console's host page

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 07:30:00.000000
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index("ix_finding_address", "finding", ["address"], unique=False)
    op.create_index("ix_alert_event_address", "alert_event", ["address"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_alert_event_address", table_name="alert_event")
    op.drop_index("ix_finding_address", table_name="finding")
