"""Plain SQL on a test inventory, SQLite path or PostgreSQL URL alike (the `database` fixture)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text

from rolecall.inventory.database import database_url, make_engine
from rolecall.inventory.sql.column_types import UTCDateTime


def query(database: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Every row a statement returns, as plain tuples (`:name` parameters)."""
    engine = make_engine(database_url(database))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def execute(database: str, sql: str, **params: Any) -> None:
    """Run one statement and commit; datetime parameters are stored as the inventory stores them."""
    statement = text(sql).bindparams(
        *(
            bindparam(name, value, type_=UTCDateTime())
            for name, value in params.items()
            if isinstance(value, datetime)
        )
    )
    engine = make_engine(database_url(database))
    try:
        with engine.begin() as connection:
            connection.execute(statement, params)
    finally:
        engine.dispose()


def is_postgres(database: str) -> bool:
    """Whether the fixture's database is a PostgreSQL URL."""
    return database.startswith("postgresql")
