"""Alembic environment: runs migrations on the engine the store hands over."""

from alembic import context
from sqlalchemy import Connection, Engine, text

from rolecall.inventory.database import owned_by_migrations
from rolecall.inventory.tables import METADATA

MIGRATION_LOCK = 1502000179  # zlib.crc32(b"rolecall-migrations"): an advisory lock key of its own


def _one_at_a_time(connection: Connection) -> None:
    """Open the migrations' transaction holding the database's migration lock.

    Processes opening a new inventory at once (four ingests started together) would
    otherwise each create the schema; the second waits, then finds it made and at head.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's write lock, busy timeout
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def run_migrations() -> None:
    """Run the pending migrations in one transaction on the store's engine, one process at once."""
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        # Begun before alembic looks: it reads the revision inside, and joins this transaction.
        _one_at_a_time(connection)
        context.configure(
            connection=connection,
            target_metadata=METADATA,
            render_as_batch=connection.dialect.name == "sqlite",
            include_name=owned_by_migrations,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
