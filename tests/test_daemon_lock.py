"""One daemon per inventory (SQLite and PostgreSQL), and two writers on one SQLite file at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from rolecall.inventory.errors import StoreError
from rolecall.inventory.store import Store
from rolecall.probes.records import Observation
from tests.daemon_helpers import daemon, event_named, rolecall
from tests.inventory_sql import is_postgres
from tests.postgres_server import PostgresServer


def test_the_lock_is_exclusive_and_released(database: str) -> None:
    first, second = Store.open(database), Store.open(database)
    holder = r"\(pid \d+\) " if not is_postgres(database) else ""
    try:
        with (
            first.daemon_lock(),
            pytest.raises(StoreError, match=rf"another rolecall daemon {holder}already runs"),
            second.daemon_lock(),
        ):
            pass
        with second.daemon_lock():
            pass
    finally:
        first.close()
        second.close()


def test_memory_databases_cannot_host_a_daemon() -> None:
    store = Store.open("sqlite://")
    try:
        with pytest.raises(StoreError, match="not :memory:"), store.daemon_lock():
            pass
    finally:
        store.close()


def _daemon_config(tmp_path: Path, database: str) -> Path:
    """A config: the inventory, a JSON log file, one weekly job (never due in a test)."""
    path = tmp_path / "rolecall.toml"
    path.write_text(
        f"""
[database]
url = "{database}"

[daemon]
log_file = "{tmp_path / "daemon.log"}"

[[schedule]]
id = "weekly"
job = "report-email"
cron = "0 7 * * MON"
""",
        encoding="utf-8",
    )
    return path


def test_one_daemon_per_postgres_inventory_and_a_killed_ones_lock_dies_with_it(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database().replace("@", ":a-password@", 1)
    config = ("--config", str(_daemon_config(tmp_path, url)))
    with daemon(*config, cwd=tmp_path, log=tmp_path / "daemon.log") as first:
        first.wait_for(event_named("daemon-start"))
        second = rolecall(*config, "run", cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr.startswith("rolecall: another rolecall daemon already runs on")
        assert second.stderr.count("\n") == 1
        assert "a-password" not in second.stderr
        first.proc.kill()  # SIGKILL: no clean-up; the server ends its session, and the lock
        first.proc.wait(timeout=30)
    (tmp_path / "daemon.log").unlink()
    with daemon(*config, cwd=tmp_path, log=tmp_path / "daemon.log") as third:
        third.wait_for(event_named("daemon-start"))
        assert third.stop() == 0
    postgres.drop_database(url)


def _observations(address: str, count: int) -> list[Observation]:
    """count distinct open-port facts about address."""
    now = datetime.now(UTC)
    return [
        Observation(address, "port-open", "scan", now, port, "tcp", "open")
        for port in range(1, count + 1)
    ]


def test_two_writers_on_one_sqlite_file_both_commit(db_path: Path) -> None:
    """What a CLI scan and a daemon job do at once: WAL and the busy timeout serialise them."""
    stores = [Store.open(str(db_path)) for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(store: Store, address: str) -> None:
        try:
            start.wait()
            for _ in range(5):
                with store.run("scan", address) as run:
                    with store.writer(batch_size=500) as writer:
                        writer.add_all(_observations(address, 3000))
                    run.counts["records"] = 3000
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(store, f"127.0.122.{n}"))
        for n, store in enumerate(stores, start=1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with stores[0].read("read rows") as connection:
            mode = connection.execute(text("PRAGMA journal_mode")).scalar_one()
            facts = connection.execute(text("SELECT count(*) FROM observation")).scalar_one()
            runs = connection.execute(text("SELECT status, count(*) FROM run GROUP BY status"))
            assert mode == "wal"
            assert facts == 6000
            assert list(runs) == [("ok", 10)]
    finally:
        for store in stores:
            store.close()
