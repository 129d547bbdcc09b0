"""in_list on both backends: exactly the listed values match, whatever characters they hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select

from rolecall.inventory.sql.in_lists import in_list
from rolecall.inventory.store import Store
from rolecall.inventory.tables import ASSET_TABLE
from tests.postgres_server import PostgresServer

SEEN = datetime(2026, 12, 4, tzinfo=UTC)
# Characters an array's text (PostgreSQL) or JSON (SQLite) must quote or escape.
NAMES = ["plain", 'quote"d', "back\\slash", "", "comma,brace{}", "NULL", " spaced ", "café"]


def test_in_list_matches_exactly_the_listed_values(database: str) -> None:
    store = Store.open(database)
    try:
        with store.transaction("test") as connection:
            table = ASSET_TABLE
            rows = [
                {"address": name, "first_seen": SEEN, "last_seen": SEEN}
                for name in [*NAMES, "other", "plain2"]
            ]
            connection.execute(table.insert(), rows)
            dialect = connection.dialect
            found = connection.execute(
                select(table.c.address).where(in_list(dialect, table.c.address, NAMES))
            ).scalars()
            assert sorted(found) == sorted(NAMES)
            ids = connection.execute(select(table.c.id)).scalars().all()
            wanted = ids[:3]
            picked = connection.execute(
                select(table.c.id).where(in_list(dialect, table.c.id, wanted))
            ).scalars()
            assert sorted(picked) == sorted(wanted)
            none = connection.execute(select(table.c.id).where(in_list(dialect, table.c.id, [])))
            assert none.all() == []
    finally:
        store.close()


def test_postgresql_reads_the_list_as_one_constant(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    store = Store.open(url)
    sent: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        """Keep the statement and parameters as they go to the driver."""
        sent.append((args[2], args[3]))

    try:
        with store.transaction("test") as connection:
            table = ASSET_TABLE
            # A filter, not an index lookup: there each row is matched against the list.
            connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
            connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            wanted = [f"10.8.{n // 256}.{n % 256}" for n in range(5000)]
            event.listen(connection, "before_cursor_execute", record)
            connection.execute(
                select(table.c.address).where(in_list(connection.dialect, table.c.address, wanted))
            )
            event.remove(connection, "before_cursor_execute", record)
            statement, parameters = sent[-1]
            explained = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(line) for line in explained.scalars())
        # A constant array (hashed, read once), not the cast of a text parameter, which
        # would compare every row with every item of the list.
        assert "= ANY ('{" in plan, plan
        assert "::character varying[]))" not in plan, plan
    finally:
        store.close()
        postgres.drop_database(url)
