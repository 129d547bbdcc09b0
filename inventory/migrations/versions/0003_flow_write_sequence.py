"""flow write sequence, so a derivation reads only the flows written since the last one

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_flow_seq", ["seq"], unique=False)
    # Older derivations marked flows by day; forgetting their settings makes the next
    # derivation a full one, which needs no marks.
    op.execute("DELETE FROM derive_state WHERE key = 'fingerprint'")


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_seq")
        batch_op.drop_column("seq")
    op.execute("DELETE FROM derive_state WHERE key = 'fingerprint'")
