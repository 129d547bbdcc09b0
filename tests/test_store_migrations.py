"""The schema: made by migrations that match the models, upgraded in place, never downgraded."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from rolecall.inventory.database import (
    SCHEMA_HEAD,
    alembic_config,
    database_url,
    make_engine,
    owned_by_migrations,
    schema_revision,
    upgrade_schema,
)
from rolecall.inventory.derivation.evidence_delta import stored_state
from rolecall.inventory.errors import StoreError
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.inventory.tables import METADATA
from rolecall.probes.records import Flow, Observation
from tests.cli_helpers import run_cli
from tests.inventory_sql import execute, is_postgres, query
from tests.postgres_server import PostgresServer

# Each release's schema: an inventory it left behind is upgraded in place, data and all.
OLDER_REVISIONS = [f"{number:04d}" for number in range(1, int(SCHEMA_HEAD))]


def _schema_at(database: str, revision: str) -> None:
    """Create an inventory as an older release left it: the schema up to ``revision``."""
    engine = make_engine(database_url(database))
    upgrade_schema(engine, revision)
    engine.dispose()


def test_migrations_build_exactly_the_models(database: str) -> None:
    store = Store.open(database)
    with store.transaction("write rows") as connection:
        # A 0.1.0 job table whose rows could not be converted stays beside ours, unclaimed.
        connection.exec_driver_sql("CREATE TABLE apscheduler_jobs (id VARCHAR PRIMARY KEY)")
    with store.read("read rows") as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_migrations})
        differences = compare_metadata(context, METADATA)
    assert differences == []
    store.close()
    if not is_postgres(database):
        assert query(database, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("revision", OLDER_REVISIONS)
def test_database_from_an_older_release_is_upgraded_with_its_data(
    capsys: pytest.CaptureFixture[str], database: str, revision: str
) -> None:
    _schema_at(database, revision)
    execute(
        database,
        "INSERT INTO asset (address, first_seen, last_seen) VALUES ('10.0.0.7', :first, :last)",
        first=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        last=datetime(2026, 1, 3, 3, 4, 5, tzinfo=UTC),
    )
    result = run_cli(capsys, "--db", database, "export", "inventory", "--format", "jsonl")
    assert result.code == 0, result.err
    assert '"address": "10.0.0.7"' in result.out
    assert '"first_seen": "2026-01-02T03:04:05.000000Z"' in result.out
    engine = make_engine(database_url(database))
    Store.open(database).close()
    assert schema_revision(engine) == SCHEMA_HEAD
    assert query(database, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_migrations})
        assert compare_metadata(context, METADATA) == []
    engine.dispose()


def test_database_newer_than_the_code_is_refused(database: str) -> None:
    Store.open(database).close()
    execute(database, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer than this rolecall"):
        Store.open(database)


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


def test_the_schema_head_constant_names_the_newest_migration(database: str) -> None:
    engine = make_engine(database_url(database))
    script = ScriptDirectory.from_config(alembic_config(engine))
    assert script.get_current_head() == SCHEMA_HEAD


def test_flows_written_before_the_write_sequence_are_kept_and_derived_in_full(
    database: str,
) -> None:
    _schema_at(database, "0002")
    execute(
        database,
        "INSERT INTO flow (client, server, server_port, transport, day, source, connections,"
        " packets, bytes, first_seen, last_seen, answered) VALUES ('10.0.0.7', '10.0.0.80',"
        " 80, 'tcp', '2026-01-02', 'zeek', 3, 30, 3000, :first, :last, TRUE)",
        first=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        last=datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC),
    )
    execute(
        database,
        "INSERT INTO derive_state (key, value) VALUES ('fingerprint', 'old'),"
        ' (\'marks\', \'{"flow_id": 1, "flow_day": "2026-01-02"}\')',
    )
    store = Store.open(database)
    with store.read("read rows") as connection:
        marks, fingerprint, _ = stored_state(connection)
    assert fingerprint == ""  # so the next derivation is a full one
    assert marks.flow_seq == 0
    summary = store.derive(DeriveSettings())
    assert summary.full
    roles = set(query(database, "SELECT address, role FROM role"))
    assert query(database, "SELECT seq, connections FROM flow") == [(0, 3)]
    assert {("10.0.0.7", "web-client"), ("10.0.0.80", "web-server")} <= roles
    # A later write of the same flow is numbered above it, so an incremental
    # derivation reads it.
    t0 = datetime(2026, 1, 2, 5, tzinfo=UTC)
    flow = Flow("10.0.0.7", "10.0.0.80", 80, "tcp", t0.date(), "zeek", t0, t0, 1, 10, 100, True)
    with store.writer() as writer:
        writer.add(flow)
    assert not store.derive(DeriveSettings()).full
    assert query(database, "SELECT seq, connections FROM flow") == [(1, 4)]
    ((seen,),) = query(database, "SELECT last_seen FROM role WHERE role = 'web-client'")
    assert str(seen).startswith("2026-01-02 05:00:00")
    store.close()


def test_role_pages_keep_room_for_rows_rewritten_in_place_on_postgresql(
    postgres: PostgresServer,
) -> None:
    new, upgraded = postgres.create_database(), postgres.create_database()
    _schema_at(upgraded, "0011")
    assert query(upgraded, "SELECT reloptions FROM pg_class WHERE relname = 'role'") == [(None,)]
    for database in (new, upgraded):
        Store.open(database).close()
        options = query(database, "SELECT reloptions FROM pg_class WHERE relname = 'role'")
        assert options == [(["fillfactor=50"],)], database
