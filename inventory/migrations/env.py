"""Alembic environment: runs migrations on the engine the store hands over."""

from alembic import context
from sqlalchemy import Engine
from sqlmodel import SQLModel

import rolecall.inventory.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from rolecall.inventory.database import owned_by_migrations


def run_migrations() -> None:
    """Run the pending migrations in one transaction on the store's engine."""
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_name=owned_by_migrations,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
