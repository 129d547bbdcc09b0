"""One daemon per inventory, and the CLI and the daemon writing the same SQLite file at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from rolecall.inventory.errors import StoreError
from rolecall.inventory.store import Store
from rolecall.probes.records import Observation


def test_the_lock_is_exclusive_and_released(db_path: Path) -> None:
    first, second = Store.open(str(db_path)), Store.open(str(db_path))
    try:
        with (
            first.daemon_lock(),
            pytest.raises(StoreError, match=r"another rolecall daemon \(pid \d+\) already runs"),
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
