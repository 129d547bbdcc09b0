"""Writers at once on one inventory: nothing lost, nothing twice, as if run one by one.

Five ingests in subprocesses (one file twice), and derivations taking turns under the write lock (an
advisory lock on PostgreSQL, SQLite's own write lock otherwise).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rolecall.inventory.derivation.evidence_delta import take_write_lock
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.inventory.tables import METADATA
from rolecall.probes.records import Observation
from tests.daemon_helpers import ROLECALL
from tests.data_paths import CONFORMANCE
from tests.inventory_sql import is_postgres, query
from tests.postgres_server import PostgresServer
from tests.test_zeek_worker import conn_row
from tests.zeek_helpers import tsv_header, tsv_line

# Columns that say when or in which order something was written, not what was stored:
# they differ between any two runs, sequential or not (evidence names rows by their ids).
NOT_CONTENT = frozenset(
    {"id", "seq", "run_id", "started", "ended", "ingested", "counts", "evidence"}
)
NOT_CONTENT_OF = {
    "run": frozenset({"owner_pid", "owner_process", "owner_host"}),
    "derive_state": frozenset({"value"}),
}
# The alert log records what each derivation knew at the time (a host's roles so far):
# any other order of the same ingests, one by one or not, logs other moments.
HISTORY_OF_ORDER = frozenset({"alert_event"})
CONN_LINES = 60_000
BASELINE_TIME = "1437831787.861602"  # 2015-07-25 13:43:07 UTC


def _conn_log(folder: Path, first: int, last: int) -> Path:
    """A Zeek conn log of connections first..last-1 in its own folder (overlapping ranges)."""
    folder.mkdir(parents=True)
    lines = [tsv_header("conn"), *(tsv_line("conn", conn_row(n)) for n in range(first, last))]
    (folder / "conn.log").write_text("".join(lines), encoding="utf-8")
    return folder


def _sources(tmp_path: Path) -> list[tuple[str, ...]]:
    """Ingests whose evidence overlaps: flows of the same days, mail twice, one file twice."""
    mail = tmp_path / "zeek-mail"
    for case in ("smtp-basic", "smtp-starttls", "socks-trace1"):
        (mail / case).mkdir(parents=True)
        for log in (CONFORMANCE / case).glob("*.log"):
            # Zeek's test baselines blank the times out; these logs get the capture's day.
            text = log.read_text(encoding="utf-8").replace("XXXXXXXXXX.XXXXXX", BASELINE_TIME)
            (mail / case / log.name).write_text(text, encoding="utf-8")
    captures = sorted(str(path) for path in CONFORMANCE.glob("*/trace.pcap"))
    conn_a = str(_conn_log(tmp_path / "conn-a", 0, CONN_LINES))
    return [
        ("zeek", conn_a),
        ("zeek", str(_conn_log(tmp_path / "conn-b", CONN_LINES // 2, CONN_LINES * 3 // 2))),
        ("pcap", *captures),
        ("zeek", str(mail)),
        # The same file from a second sensor at the same time: stored once, never summed twice.
        ("zeek", conn_a),
    ]


def _ingest(database: str, source: tuple[str, ...]) -> subprocess.Popen[str]:
    """Start `rolecall ingest KIND FILES...` on database."""
    return _rolecall(database, "ingest", *source)


def _rolecall(database: str, *args: str) -> subprocess.Popen[str]:
    """Start a rolecall command on database."""
    return subprocess.Popen(
        [*ROLECALL, "--db", database, "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(procs: list[subprocess.Popen[str]]) -> None:
    """Wait for every ingest; each must end well."""
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (proc.args, out, err)


def _content(database: str) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every table's rows as a multiset of content (ids and write order left out)."""
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    for table in METADATA.sorted_tables:
        if table.name in HISTORY_OF_ORDER:
            continue
        skip = NOT_CONTENT | NOT_CONTENT_OF.get(table.name, frozenset())
        columns = [column.name for column in table.columns if column.name not in skip]
        listed = ", ".join(f'"{name}"' for name in columns)
        found[table.name] = Counter(query(database, f'SELECT {listed} FROM "{table.name}"'))  # noqa: S608 - names from the models
    return found


@pytest.fixture
def second_database(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> Iterator[str]:
    """Another empty inventory on the same backend as `database`."""
    if not is_postgres(database):
        yield str(tmp_path / "sequential.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


def test_ingests_at_once_store_what_the_same_in_a_row_store(
    database: str, second_database: str, tmp_path: Path
) -> None:
    sources = _sources(tmp_path)
    for source in sources:
        _finished([_ingest(second_database, source)])
    _finished([_ingest(database, source) for source in sources])
    # Each ingest derived incrementally, in whatever order the writers took turns: roles,
    # groups and findings are compared as those derivations left them (see test_derive_order).
    together, one_by_one = _content(database), _content(second_database)
    assert sum(one_by_one["flow"].values()) > 0
    assert sum(one_by_one["smtp"].values()) > 0
    assert sum(one_by_one["role"].values()) > 0
    for table, rows in one_by_one.items():
        assert together[table] == rows, table
    runs = query(database, "SELECT kind, status FROM run WHERE kind LIKE 'ingest%'")
    assert sorted(runs) == sorted(
        query(second_database, "SELECT kind, status FROM run WHERE kind LIKE 'ingest%'")
    )
    assert {status for _, status in runs} == {"ok"}


def _web_servers(store: Store, net: int) -> None:
    """Store 50 web servers seen by a probe."""
    seen = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with store.writer() as writer:
        writer.add_all(
            Observation(f"10.{net}.0.{n}", "protocol", "probe", seen, 80, "tcp", "http")
            for n in range(50)
        )


def test_derivations_at_once_take_turns_and_leave_what_one_leaves(
    database: str, second_database: str
) -> None:
    stores = [Store.open(database) for _ in range(3)]
    _web_servers(stores[0], 1)
    derived: list[int] = []

    def derive(store: Store) -> None:
        derived.append(store.derive(DeriveSettings()).roles)

    try:
        with stores[0].transaction("hold the write lock") as connection:
            take_write_lock(connection)
            waiting = [threading.Thread(target=derive, args=(store,)) for store in stores[1:]]
            for thread in waiting:
                thread.start()
            time.sleep(1.5)
            assert all(thread.is_alive() for thread in waiting), "a derivation did not wait"
            assert derived == []
        for thread in waiting:
            thread.join(timeout=60)
        assert len(derived) == 2
    finally:
        for store in stores:
            store.close()

    alone = Store.open(second_database)
    _web_servers(alone, 1)
    alone.derive(DeriveSettings())
    alone.close()
    for table in ("role", "asset_group", "finding", "daily_metric"):
        assert _content(database)[table] == _content(second_database)[table], table
    assert sum(_content(database)["role"].values()) == 50
