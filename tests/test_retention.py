"""Retention: `rolecall prune` and the daemon's daily prune remove old events, keep the series."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from rolecall.inventory.retention import prune
from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.probes.records import (
    ConnectRequest,
    Flow,
    Observation,
    Record,
    SmtpTransaction,
    SocksRequest,
)
from tests.cli_helpers import run_cli
from tests.daemon_helpers import daemon, event_named
from tests.inventory_sql import query

EVENT_TABLES = ("smtp", "socks", "connect", "flow", "observation")
KEPT_TABLES = ("asset", "service", "role", "finding", "daily_metric")


def _today() -> date:
    """Today's UTC date."""
    return datetime.now(UTC).date()


def _events(day: date, clients: int) -> list[Record]:
    """A day's evidence: each client mails, tunnels and connects once; one open port."""
    at = datetime.combine(day, time(12), tzinfo=UTC)
    records: list[Record] = [Observation("192.0.2.25", "port-open", "scan", at, 25, "tcp", "open")]
    for n in range(1, clients + 1):
        client = f"10.0.0.{n}"
        records += [
            SmtpTransaction(at, client, 40000 + n, "192.0.2.25", 25, "zeek", mail_from="a@b"),
            SocksRequest(at, client, 40000 + n, "10.0.9.1", 1080, "zeek", 5, status="succeeded"),
            ConnectRequest(at, client, 40000 + n, "10.0.9.2", 3128, "zeek", status=200),
            Flow(client, "192.0.2.25", 25, "tcp", day, "zeek", at, at, 2, 20, 2000, True),
        ]
    return records


def _store_days(database: str, days: dict[int, int]) -> None:
    """Store evidence for days ago -> clients that day, and derive."""
    store = Store.open(database)
    with store.writer() as writer:
        for ago, clients in days.items():
            writer.add_all(_events(_today() - timedelta(days=ago), clients))
    store.derive(DeriveSettings())
    store.close()


def _count(database: str, table: str) -> int:
    """Rows in a table."""
    ((count,),) = query(database, f"SELECT count(*) FROM {table}")  # noqa: S608 - test names
    return int(count)


def _config(tmp_path: Path, days: int, extra: str = "") -> Path:
    """A config file with [retention] days."""
    path = tmp_path / "rolecall.toml"
    path.write_text(f"[retention]\ndays = {days}\n{extra}", encoding="utf-8")
    return path


def test_prune_removes_old_events_says_what_and_keeps_hosts_roles_and_series(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_days(database, {10: 3, 9: 2, 1: 1})
    kept = {table: _count(database, table) for table in KEPT_TABLES}
    assert kept["role"]
    assert kept["daily_metric"]

    config = _config(tmp_path, 5)
    result = run_cli(capsys, "--config", str(config), "--db", database, "prune")

    assert result.code == 0, result.err
    removed = dict(line.split("\t") for line in result.out.splitlines()[:5])
    cutoff = (_today() - timedelta(days=5)).isoformat()
    assert removed == {
        "smtp": "5",
        "socks": "5",
        "connect": "5",
        "flow": "5",
        "observation": "0",  # the open port was seen again yesterday: one fact, kept
    }
    assert result.out.splitlines()[5].endswith(f"removed rows of days before {cutoff}")
    assert {table: _count(database, table) for table in EVENT_TABLES} == {
        "smtp": 1,
        "socks": 1,
        "connect": 1,
        "flow": 1,
        "observation": 1,
    }
    assert {table: _count(database, table) for table in KEPT_TABLES} == kept
    runs = query(database, "SELECT kind, status, counts FROM run WHERE kind = 'prune'")
    assert len(runs) == 1
    assert runs[0][1] == "ok"
    assert json.loads(runs[0][2])["smtp_removed"] == 5
    # Nothing old is left: a second prune removes nothing.
    again = run_cli(capsys, "--config", str(config), "--db", database, "prune")
    assert again.code == 0, again.err
    assert again.out.splitlines()[:5] == [f"{table}\t0" for table in EVENT_TABLES]


def test_observations_last_seen_before_the_cutoff_are_pruned(database: str) -> None:
    store = Store.open(database)
    old = datetime.combine(_today() - timedelta(days=30), time(), tzinfo=UTC)
    with store.writer() as writer:
        writer.add(Observation("192.0.2.7", "port-open", "scan", old, 22, "tcp", "open"))
        writer.add(Observation("192.0.2.7", "port-open", "scan", old, 80, "tcp", "open"))
        writer.add(
            Observation("192.0.2.7", "port-open", "scan", datetime.now(UTC), 80, "tcp", "open")
        )
    summary = prune(store, 29)
    store.close()
    assert summary.removed["observation"] == 1
    assert query(database, "SELECT port FROM observation") == [(80,)]
    assert _count(database, "asset") == 1


def _history(
    capsys: pytest.CaptureFixture[str], database: str, metric: str
) -> list[dict[str, Any]]:
    """`history show METRIC --days 15 --format json`, parsed."""
    result = run_cli(
        capsys, "--db", database, "history", "show", metric, "--days", "15", "--format", "json"
    )
    assert result.code == 0, result.err
    points: list[dict[str, Any]] = json.loads(result.out)
    return points


def test_a_full_derivation_after_a_prune_keeps_the_series_of_pruned_days(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_days(database, {12: 2, 11: 5, 10: 1, 8: 4, 6: 3, 4: 2, 3: 7, 1: 1})
    metrics = ("smtp_clients", "smtp_connections")
    before = {metric: _history(capsys, database, metric) for metric in metrics}
    assert [point["value"] for point in before["smtp_clients"]][:4] == [0, 0, 2, 5]

    pruned = run_cli(capsys, "--config", str(_config(tmp_path, 5)), "--db", database, "prune")
    assert pruned.code == 0, pruned.err
    derived = run_cli(capsys, "--db", database, "findings", "derive", "--full")
    assert derived.code == 0, derived.err
    assert "(full;" in derived.out

    assert _count(database, "smtp") == 2 + 7 + 1  # days 4, 3 and 1 ago
    after = {metric: _history(capsys, database, metric) for metric in metrics}
    assert after == before


def test_new_evidence_after_pruning_the_newest_rows_is_still_derived(database: str) -> None:
    """SQLite numbers a new row max(id) + 1: the newest rows pruned, the watermarks must drop."""
    _store_days(database, {20: 3})
    store = Store.open(database)
    prune(store, 5)
    assert _count(database, "smtp") == 0
    now = datetime.now(UTC)
    with store.writer() as writer:
        writer.add(SmtpTransaction(now, "10.0.0.99", 41000, "192.0.2.25", 25, "zeek"))
        writer.add(SocksRequest(now, "10.0.0.98", 41000, "10.0.9.1", 1080, "zeek", 5))
    assert not store.derive(DeriveSettings()).full
    store.close()
    roles = set(query(database, "SELECT address, role FROM role"))
    assert ("10.0.0.99", "smtp-client") in roles
    assert ("10.0.0.98", "socks-client") in roles


def test_the_daemon_prunes_when_it_starts_and_records_the_run(tmp_path: Path) -> None:
    database = str(tmp_path / "inventory.db")
    _store_days(database, {10: 2, 1: 1})
    log = tmp_path / "daemon.log"
    config = _config(tmp_path, 5, f'[daemon]\nlog_file = "{log}"\n')

    with daemon("--config", str(config), "--db", database, cwd=tmp_path, log=log) as running:
        done = running.wait_for(event_named("job-ok", job="internal:prune"))
        assert running.stop() == 0

    assert done["removed"]["smtp"] == 2
    assert "smtp 2" in done["outcome"]
    assert _count(database, "smtp") == 1
    assert query(database, "SELECT kind, status FROM run WHERE kind = 'prune'") == [("prune", "ok")]
