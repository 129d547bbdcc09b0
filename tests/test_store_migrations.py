"""The schema: made by migrations that match the models, upgraded in place, never downgraded."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from rolecall.inventory.database import (
    SCHEMA_HEAD,
    alembic_config,
    make_engine,
    owned_by_migrations,
    schema_revision,
    upgrade_schema,
)
from rolecall.inventory.derivation.evidence_delta import stored_state
from rolecall.inventory.errors import StoreError
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.probes.records import Flow, Observation
from tests.cli_helpers import run_cli


def _schema_at(db_path: Path, revision: str) -> None:
    """Create an inventory as an older release left it: the schema up to ``revision``."""
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade_schema(engine, revision)
    engine.dispose()


def test_migrations_build_exactly_the_models(db_path: Path) -> None:
    store = Store.open(str(db_path))
    with store.transaction("write rows") as connection:
        # A 0.1.0 job table whose rows could not be converted stays beside ours, unclaimed.
        connection.exec_driver_sql("CREATE TABLE apscheduler_jobs (id VARCHAR PRIMARY KEY)")
    with store.read("read rows") as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_migrations})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_database_from_the_first_release_is_upgraded_with_its_data(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    _schema_at(db_path, "0001")
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO asset (address, first_seen, last_seen)"
            " VALUES ('10.0.0.7', '2026-01-02 03:04:05.000000', '2026-01-03 03:04:05.000000')"
        )
    result = run_cli(capsys, "--db", str(db_path), "export", "inventory", "--format", "jsonl")
    assert result.code == 0, result.err
    assert '"address": "10.0.0.7"' in result.out
    assert '"first_seen": "2026-01-02T03:04:05.000000Z"' in result.out
    engine = make_engine(f"sqlite:///{db_path}")
    Store.open(str(db_path)).close()
    assert schema_revision(engine) == SCHEMA_HEAD
    with sqlite3.connect(db_path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == schema_revision(engine)
    engine.dispose()


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


def test_the_schema_head_constant_names_the_newest_migration(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    script = ScriptDirectory.from_config(alembic_config(engine))
    assert script.get_current_head() == SCHEMA_HEAD


def test_flows_written_before_the_write_sequence_are_kept_and_derived_in_full(
    db_path: Path,
) -> None:
    _schema_at(db_path, "0002")
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO flow (client, server, server_port, transport, day, source, connections,"
            " packets, bytes, first_seen, last_seen, answered) VALUES ('10.0.0.7', '10.0.0.80',"
            " 80, 'tcp', '2026-01-02', 'zeek', 3, 30, 3000, '2026-01-02 03:04:05.000000',"
            " '2026-01-02 04:04:05.000000', 1)"
        )
        conn.execute(
            "INSERT INTO derive_state (key, value) VALUES ('fingerprint', 'old'),"
            ' (\'marks\', \'{"flow_id": 1, "flow_day": "2026-01-02"}\')'
        )
    store = Store.open(str(db_path))
    with store.read("read rows") as connection:
        marks, fingerprint, _ = stored_state(connection)
    assert fingerprint == ""  # so the next derivation is a full one
    assert marks.flow_seq == 0
    summary = store.derive(DeriveSettings())
    assert summary.full
    with sqlite3.connect(db_path) as conn:
        roles = set(conn.execute("SELECT address, role FROM role"))
        assert conn.execute("SELECT seq, connections FROM flow").fetchall() == [(0, 3)]
    assert {("10.0.0.7", "web-client"), ("10.0.0.80", "web-server")} <= roles
    # A later write of the same flow is numbered above it, so an incremental
    # derivation reads it.
    t0 = datetime(2026, 1, 2, 5, tzinfo=UTC)
    flow = Flow("10.0.0.7", "10.0.0.80", 80, "tcp", t0.date(), "zeek", t0, t0, 1, 10, 100, True)
    with store.writer() as writer:
        writer.add(flow)
    assert not store.derive(DeriveSettings()).full
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT seq, connections FROM flow").fetchall() == [(1, 4)]
        (last,) = conn.execute("SELECT last_seen FROM role WHERE role = 'web-client'").fetchone()
    assert last.startswith("2026-01-02 05:00:00")
    store.close()
