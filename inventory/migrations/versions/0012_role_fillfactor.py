"""role fillfactor: on PostgreSQL, role pages leave a fifth free for rows updated in place

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 15:00:00.000000

Every derivation rewrites the roles its new evidence touches (their spans, their
evidence). A row rewritten on its own page, with no indexed column changed, needs no new
index entries (PostgreSQL's heap-only tuples); on full pages every rewrite goes to another
page and into all three of the table's indexes. Pages written from now on (a full
derivation rewrites them all) keep the room; SQLite has no such setting.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE role SET (fillfactor = 80)")


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE role RESET (fillfactor)")
