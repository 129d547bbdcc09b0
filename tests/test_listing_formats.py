"""Every listing's --format json (one document) and jsonl (one object per line), typed."""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rolecall.inventory.store import Store
from rolecall.orchestrator.cli.app import main
from rolecall.probes.records import HostName, Service, SmtpTransaction
from tests.cli_helpers import run_cli
from tests.postgres_server import PostgresServer
from tests.report_helpers import UNTIL, build_inventory

UNTIL_DAY = (UNTIL.date()).isoformat()
LISTINGS = {
    "findings": ("findings", "list"),
    "groups": ("groups", "mail-clients"),
    "history": ("history", "show", "smtp_clients", "--days", "30", "--until", UNTIL_DAY),
    "mail": ("mail", "cluster", "user_agent", "--on", "client"),
    "schedules": ("schedule", "list"),
    "runs": ("runs",),
}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TIME_KEYS = frozenset({"first_seen", "last_seen", "started", "ended", "next_run", "ts"})


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, module_database: str) -> str:
    """A derived inventory with findings, groups, 90 days of mail, runs and two schedules."""
    folder = tmp_path_factory.mktemp("listings")
    db = module_database
    store = build_inventory(db)
    with store.writer() as writer:
        # Mail without a user agent: its cluster's value is "", never " (1)".
        writer.add(SmtpTransaction(UNTIL, "10.10.1.200", 41000, "203.0.113.25", 25, "pcap"))
    store.close()
    weekly = ["--db", db, "-q", "schedule", "add", "report-email", "--id", "weekly"]
    assert main([*weekly, "--to", "soc@example.org"]) == 0
    drop = folder / "drop"
    drop.mkdir()
    watch = ["--db", db, "-q", "schedule", "add", "ingest", "--watch", str(drop)]
    assert main([*watch, "--every", "300", "--id", "drop"]) == 0
    return db


def _listing(capsys: pytest.CaptureFixture[str], db: str, args: tuple[str, ...], fmt: str) -> str:
    """What `rolecall ARGS --format FMT` prints, asserting it succeeded."""
    result = run_cli(capsys, "--db", db, *args, "--format", fmt)
    assert result.code == 0, result.err
    return result.out


def _json(capsys: pytest.CaptureFixture[str], db: str, name: str) -> list[dict[str, Any]]:
    """A listing's --format json document, checked to be one array of objects."""
    document = json.loads(_listing(capsys, db, LISTINGS[name], "json"))
    assert isinstance(document, list)
    assert document, f"{name}: the test inventory should list something"
    assert all(isinstance(row, dict) for row in document)
    return document


def _times(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) under a time key, anywhere in a JSON value."""
    if isinstance(value, dict):
        for inner, item in value.items():
            yield from _times(item, inner)
    elif isinstance(value, list):
        for item in value:
            yield from _times(item, key)
    elif key in TIME_KEYS:
        yield key, value


@pytest.mark.parametrize("name", sorted(LISTINGS))
def test_json_is_one_document_and_jsonl_the_same_rows_one_per_line(
    capsys: pytest.CaptureFixture[str], inventory: str, name: str
) -> None:
    document = _json(capsys, inventory, name)
    lines = _listing(capsys, inventory, LISTINGS[name], "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == document
    for key, value in _times(document):
        assert value is None or TIME.match(value), f"{name}: {key} {value!r}"


def test_findings_keep_evidence_as_a_list_in_the_listing_and_the_export(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    listed = _json(capsys, inventory, "findings")
    exported = [
        json.loads(line)
        for line in _listing(capsys, inventory, ("export", "findings"), "jsonl").splitlines()
    ]
    assert {(row["rule"], row["address"]) for row in listed} == {
        (row["rule"], row["address"]) for row in exported
    }
    for row in [*listed, *exported]:
        assert isinstance(row["evidence"], list)
        assert row["evidence"]
        assert all(re.fullmatch(r"[a-z_]+:\S+", ref) for ref in row["evidence"])
        assert TIME.match(row["first_seen"])
        assert TIME.match(row["last_seen"])


def test_groups_count_hosts_as_numbers(capsys: pytest.CaptureFixture[str], inventory: str) -> None:
    for row in _json(capsys, inventory, "groups"):
        assert isinstance(row["group"], str)
        assert isinstance(row["count"], int)
        assert row["count"] == len(row["addresses"])
        assert all(isinstance(address, str) for address in row["addresses"])


def test_history_gives_each_day_its_baseline_and_threshold(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    days = _json(capsys, inventory, "history")
    assert len(days) == 30
    assert days[-1]["day"] == UNTIL_DAY
    for day in days:
        assert (day["metric"], day["group"]) == ("smtp_clients", None)
        assert isinstance(day["value"], int)
        assert isinstance(day["baseline_days"], int)
        assert day["baseline_days"] == 28
        for key in ("median", "mad", "low", "high"):
            assert isinstance(day[key], float)
        assert day["low"] <= day["median"] <= day["high"] < day["threshold"]
        assert isinstance(day["threshold"], int)
        assert day["threshold"] >= day["median"] + 3
        assert day["surge"] is (day["value"] >= day["threshold"])
    text = run_cli(capsys, "--db", inventory, *LISTINGS["history"]).out.splitlines()
    assert text[0].split() == ["day", "value", "median", "MAD", "low", "high", "threshold"]
    last = days[-1]
    shown = [last["day"], str(last["value"]), f"{last['median']:g}", f"{last['mad']:g}"]
    assert text[30].split()[:4] == shown
    assert text[30].split()[6] == str(last["threshold"])


def test_history_uses_the_configured_surge_settings(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text("[history]\nsurge_min_increase = 50\n", encoding="utf-8")
    args = ("--config", str(config), *LISTINGS["history"], "--format", "json")
    result = run_cli(capsys, "--db", inventory, *args)
    assert result.code == 0, result.err
    for day in json.loads(result.out):
        assert day["threshold"] == math.ceil(day["median"] + 50)
    text = run_cli(capsys, "--db", inventory, "--config", str(config), *LISTINGS["history"])
    assert "at least 50 over the median" in text.out


def test_history_before_enough_days_has_no_baseline_and_says_so(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    early = ("history", "show", "smtp_clients", "--days", "3", "--until", "2025-12-03")
    days = json.loads(_listing(capsys, inventory, early, "json"))
    assert [day["value"] for day in days] == [0, 0, 1]
    for day in days:
        assert (day["median"], day["threshold"], day["surge"]) == (None, None, False)
        assert day["baseline_days"] == 0
    text = run_cli(capsys, "--db", inventory, *early).out.splitlines()
    assert text[3].split() == ["2025-12-03", "1", "-", "-", "-", "-", "-"]
    assert "once there are 7" in text[4]


def test_mail_clusters_count_messages_as_numbers(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    clusters = _json(capsys, inventory, "mail")
    for cluster in clusters:
        assert isinstance(cluster["messages"], int)
        assert isinstance(cluster["distinct_client"], int)
        assert isinstance(cluster["share"], float)
        members = cluster["client"]
        assert all(set(member) == {"value", "messages"} for member in members)
        assert all(isinstance(member["messages"], int) for member in members)
        assert sum(member["messages"] for member in members) <= cluster["messages"]
    bat = next(c for c in clusters if c["user_agent"] == "The Bat! (v9.1)")
    assert bat["client"] == [{"value": "10.10.1.100", "messages": 90}]
    unnamed = [c for c in clusters if c["user_agent"] == ""]
    assert len(unnamed) == 1
    assert {"value": "10.10.1.200", "messages": 1} in unnamed[0]["client"]
    csv_text = _listing(capsys, inventory, LISTINGS["mail"], "csv")
    assert "10.10.1.100 (90)" in csv_text
    assert csv_text.splitlines()[1].split(",")[1].isdigit()


def test_schedules_list_their_timing_and_arguments_typed(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    schedules = {row["id"]: row for row in _json(capsys, inventory, "schedules")}
    assert set(schedules) == {"weekly", "drop"}
    weekly, drop = schedules["weekly"], schedules["drop"]
    assert (weekly["job"], weekly["cron"], weekly["every"]) == ("report-email", "0 7 * * MON", None)
    assert weekly["arguments"] == {"to": ["soc@example.org"]}
    assert (drop["job"], drop["cron"], drop["every"], drop["source"]) == (
        "ingest",
        None,
        300,
        "cli",
    )
    assert isinstance(drop["arguments"]["watch"], str)
    assert TIME.match(weekly["next_run"])
    text = run_cli(capsys, "--db", inventory, "schedule", "list").out
    assert f"\t{weekly['next_run']}\t" in text


def test_runs_list_what_ran_with_numbers_and_one_time_precision(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    runs = _json(capsys, inventory, "runs")
    assert [run["id"] for run in runs] == list(range(1, len(runs) + 1))
    for run in runs:
        assert run["kind"] == "ingest pcap"
        assert run["status"] == "ok"
        assert isinstance(run["counts"], dict)
        assert all(isinstance(count, int) for count in run["counts"].values())
        assert run["host"] == socket.gethostname(), "the machine whose process ran it"
    exported = json.loads(_listing(capsys, inventory, ("export", "runs"), "json"))
    assert exported == runs
    text = run_cli(capsys, "--db", inventory, "runs").out.splitlines()
    assert text[0] == "id\tkind\tstatus\tstarted\tended\ttarget\tcounts\terror\thost"
    first = text[1].split("\t")
    assert first[:5] == ["1", "ingest pcap", "ok", runs[0]["started"], runs[0]["ended"]]
    assert "files=1" in first[6]
    assert first[8] == socket.gethostname()


def test_an_empty_listing_is_an_empty_document(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    Store.open(database).close()
    for args in (("runs",), ("schedule", "list"), ("findings", "list")):
        assert json.loads(_listing(capsys, database, args, "json")) == []
        assert _listing(capsys, database, args, "jsonl") == ""
    assert run_cli(capsys, "--db", database, "runs").out == "no runs\n"


# Sorted by code point, "2001:db8::10" comes first ("0" < ":"); a language's collation
# (ICU "en" here) puts "2001:db8::1:2" first, as it puts "a" before "B".
ICU_ORDERED = ("2001:db8::1:2", "2001:db8::10")


@pytest.fixture
def icu_database(postgres: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database created with ICU's English collation (not "C")."""
    name = "icu_" + str(id(postgres))
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=postgres.user, autocommit=True
    ) as admin:
        admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'"
            " LOCALE 'C.UTF-8'"
        )
    url = postgres.url(name)
    yield url
    postgres.drop_database(url)


def test_text_sorts_by_code_point_whatever_the_databases_collation(
    capsys: pytest.CaptureFixture[str], icu_database: str
) -> None:
    store = Store.open(icu_database)
    with store.read("compare") as connection:
        first, second = ICU_ORDERED
        collated = f"SELECT '{first}' < '{second}'"
        assert connection.exec_driver_sql(collated).scalar_one() is True
    with store.writer() as writer:
        for address in ICU_ORDERED:
            writer.add(HostName(address, f"Host-{address[-2:]}.example", "dns", UNTIL))
            writer.add(Service(address, 25, "tcp", "probe", UNTIL, "smtp"))
    store.close()
    exported = json.loads(
        run_cli(capsys, "--db", icu_database, "export", "inventory", "--format", "json").out
    )
    # The export merges per-table streams sorted by the database: one collation or
    # another, a host's names and ports must not go missing.
    assert [row["address"] for row in exported] == sorted(ICU_ORDERED)
    assert [row["hostnames"] for row in exported] == [["Host-10.example"], ["Host-:2.example"]]
    assert all(row["open_ports"] == ["25/tcp"] for row in exported)
    services = json.loads(
        run_cli(capsys, "--db", icu_database, "export", "services", "--format", "json").out
    )
    assert [row["address"] for row in services] == sorted(ICU_ORDERED)
