"""in_list on both backends: exactly the listed values match, whatever characters they hold."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from rolecall.inventory.sql.in_lists import in_list
from rolecall.inventory.store import Store
from rolecall.inventory.tables import ASSET_TABLE

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
