"""The schema: made by migrations that match the models, upgraded in place, never downgraded."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from inventory.database import (
    make_engine,
    owned_by_migrations,
    schema_revision,
    upgrade_schema,
)
from inventory.errors import StoreError
from inventory.store import Store
from probes.records import Observation
from tests.cli_helpers import run_cli


def test_migrations_build_exactly_the_models(db_path: Path) -> None:
    store = Store.open(str(db_path))
    with store.engine.begin() as connection:
        # The scheduler's own job table lives beside ours; migrations must not claim it.
        connection.exec_driver_sql("CREATE TABLE apscheduler_jobs (id VARCHAR PRIMARY KEY)")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_migrations})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_database_from_the_first_release_is_upgraded_with_its_data(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade_schema(engine, "0001")
    engine.dispose()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO asset (address, first_seen, last_seen)"
            " VALUES ('10.0.0.7', '2026-01-02 03:04:05.000000', '2026-01-03 03:04:05.000000')"
        )
    result = run_cli(capsys, "--db", str(db_path), "export", "inventory", "--format", "jsonl")
    assert result.code == 0, result.err
    assert '"address": "10.0.0.7"' in result.out
    assert '"first_seen": "2026-01-02T03:04:05Z"' in result.out
    engine = make_engine(f"sqlite:///{db_path}")
    store = Store.open(str(db_path))
    assert schema_revision(engine) == schema_revision(store.engine)
    with sqlite3.connect(db_path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == schema_revision(store.engine)


def test_database_newer_than_the_code_is_refused(db_path: Path) -> None:
    Store.open(str(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer than this rolecall"):
        Store.open(str(db_path))


def test_a_new_inventory_is_readable_by_its_owner_only(db_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store.open(str(db_path))
        with store.writer() as writer:
            writer.add(Observation("192.0.2.1", "host-up", "scan", datetime.now(UTC)))
    finally:
        os.umask(old)
    for path in db_path.parent.glob(db_path.name + "*"):
        assert path.stat().st_mode & 0o077 == 0, path
    store.close()
