"""event tables range-partitioned by day on PostgreSQL, so retention drops whole days

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00.000000

On PostgreSQL, smtp, socks and connect become partitioned by ts and flow by day, each with
a default partition; the rows are kept, those of the last 400 days in day partitions. The
primary key becomes (id, ts|day): a partitioned table's unique keys hold its partition
column. On SQLite nothing changes.
"""

from datetime import date

from alembic import op
from sqlalchemy import Connection, text

from rolecall.inventory.partitions import (
    DEFAULT_RETENTION_DAYS,
    create_day,
    create_default,
    window,
)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Per table: its partition column, its unique constraint's columns, its plain indexes.
TABLES: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "smtp": (
        "ts",
        ("ts", "client", "client_port", "server", "server_port", "trans_depth", "source"),
        {"ix_smtp_client": ("client",), "ix_smtp_ts": ("ts",)},
    ),
    "socks": (
        "ts",
        ("ts", "client", "client_port", "proxy", "proxy_port", "source"),
        {"ix_socks_client": ("client",), "ix_socks_proxy": ("proxy",)},
    ),
    "connect": (
        "ts",
        ("ts", "client", "client_port", "proxy", "proxy_port", "source"),
        {"ix_connect_client": ("client",), "ix_connect_proxy": ("proxy",)},
    ),
    "flow": (
        "day",
        ("client", "server", "server_port", "transport", "day", "source"),
        {"ix_flow_day": ("day",), "ix_flow_seq": ("seq",)},
    ),
}


def _rebuild(connection: Connection, table: str, partitioned: bool) -> None:
    """Copy a table into a new one of the same name, partitioned by day or not."""
    column, unique, indexes = TABLES[table]
    old = f"{table}_before_0010"
    run = connection.exec_driver_sql
    run(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    # Constraint and index names are the schema's: the new table takes them over.
    for index in indexes:
        run(f'DROP INDEX "{index}"')
    run(f'ALTER TABLE "{old}" DROP CONSTRAINT "uq_{table}"')
    run(f'ALTER TABLE "{old}" DROP CONSTRAINT "{table}_pkey"')
    tail = f" PARTITION BY RANGE ({column})" if partitioned else ""
    run(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS){tail}')
    key = f"id, {column}" if partitioned else "id"
    run(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ({key})')
    run(f'ALTER TABLE "{table}" ADD CONSTRAINT "uq_{table}" UNIQUE ({", ".join(unique)})')
    for index, columns in indexes.items():
        run(f'CREATE INDEX "{index}" ON "{table}" ({", ".join(columns)})')
    run(f'ALTER SEQUENCE "{table}_id_seq" OWNED BY "{table}".id')
    if partitioned:
        create_default(connection, table)
        for day in sorted(_recent_days(connection, old, column)):
            create_day(connection, table, day)
    run(f'INSERT INTO "{table}" SELECT * FROM "{old}"')  # noqa: S608 - names are ours
    run(f'DROP TABLE "{old}"')


def _recent_days(connection: Connection, old: str, column: str) -> set[date]:
    """The days of the default retention window that the old table holds rows of."""
    first, last = window(DEFAULT_RETENTION_DAYS)
    day = column if column == "day" else f"({column} AT TIME ZONE 'UTC')::date"
    rows = connection.execute(
        text(f'SELECT DISTINCT {day} AS day FROM "{old}"'),  # noqa: S608 - names are ours
    ).scalars()
    return {found for found in rows if first <= found <= last}


def upgrade() -> None:
    """Apply this revision."""
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    for table in TABLES:
        _rebuild(connection, table, partitioned=True)
    connection.execute(text("ANALYZE smtp, socks, connect, flow"))


def downgrade() -> None:
    """Revert this revision."""
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    for table in TABLES:
        _rebuild(connection, table, partitioned=False)
