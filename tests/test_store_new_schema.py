"""A new SQLite inventory is made from the models at once: the schema the migrations build."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from rolecall.inventory.database import (
    SCHEMA_HEAD,
    database_url,
    make_engine,
    schema_revision,
    upgrade_schema,
)
from rolecall.inventory.store import Store


def _schema(path: Path) -> dict[str, object]:
    """Every table, index and trigger as SQLite describes it (whitespace aside), and the rows."""
    with sqlite3.connect(path) as connection:
        found: dict[str, object] = {}
        for kind, name, sql in connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ):
            found[f"{kind} {name}"] = re.sub(r"\s+", " ", sql or "")
            if kind == "table":
                found[f"columns {name}"] = connection.execute(
                    f'PRAGMA table_xinfo("{name}")'
                ).fetchall()
                found[f"rows {name}"] = connection.execute(f'SELECT * FROM "{name}"').fetchall()  # noqa: S608
        return found


def test_a_new_inventory_has_the_schema_the_migrations_build(tmp_path: Path) -> None:
    made, migrated = tmp_path / "made.db", tmp_path / "migrated.db"
    Store.open(str(made)).close()
    engine = make_engine(database_url(str(migrated)))
    # A revision named, not "head": the migrations run one by one, as for an older inventory.
    upgrade_schema(engine, SCHEMA_HEAD)
    engine.dispose()
    assert _schema(made) == _schema(migrated)
    assert _schema(made)["rows alembic_version"] == [(SCHEMA_HEAD,)]


def test_a_database_file_holding_tables_is_upgraded_by_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE apscheduler_jobs"
            " (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT, job_state BLOB NOT NULL)"
        )
    Store.open(str(path)).close()
    engine = make_engine(database_url(str(path)))
    assert schema_revision(engine) == SCHEMA_HEAD
    engine.dispose()
    # Migration 0004 drops a 0.1.0 job table with no rows: only the migrations know that.
    assert "table apscheduler_jobs" not in _schema(path)
