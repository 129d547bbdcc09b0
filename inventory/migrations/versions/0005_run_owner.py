"""run owner: which process runs it, so runs of dead processes are marked interrupted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_host", sa.String(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("owner_pid", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("owner_process", sa.String(), server_default="", nullable=False)
        )
        batch_op.create_index("ix_run_status", ["status"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_status")
        batch_op.drop_column("owner_process")
        batch_op.drop_column("owner_pid")
        batch_op.drop_column("owner_host")
