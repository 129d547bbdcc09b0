"""`rolecall changes`: hosts, ports, roles and findings that changed, as ndiff shows for scans."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rolecall.inventory.changes import changes_between
from rolecall.inventory.store import Store
from rolecall.reports.period_tables import change_rows
from tests.cli_helpers import run_cli
from tests.nmap_samples import HEAD, TAIL, host_xml
from tests.report_helpers import SINCE, UNTIL

# 2026-11-24T01:56:50Z, the time tests/nmap_samples writes into its scans.
FIRST_SCAN = 1795485410
DAY = 86400


def _scan(path: Path, when: int, hosts: list[tuple[str, int]]) -> Path:
    """An nmap XML scan made at `when` (Unix time) of hosts with one open port each."""
    body = "".join(host_xml(address, port) for address, port in hosts)
    text = HEAD + body + TAIL
    path.write_text(
        text.replace(str(FIRST_SCAN + 1), str(when + 1)).replace(str(FIRST_SCAN), str(when))
    )
    return path


@pytest.fixture
def two_scans(tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> str:
    """An inventory of two scans three days apart: one host gone, one new, ports moved."""
    first = _scan(tmp_path / "a.xml", FIRST_SCAN, [("10.0.0.1", 25), ("10.0.0.2", 25)])
    second = _scan(tmp_path / "b.xml", FIRST_SCAN + 3 * DAY, [("10.0.0.1", 587), ("10.0.0.3", 25)])
    result = run_cli(capsys, "--db", database, "-q", "ingest", "nmap-xml", str(first), str(second))
    assert result.code == 0, result.err
    return database


def test_changes_between_two_scans_lists_hosts_and_ports(
    capsys: pytest.CaptureFixture[str], two_scans: str
) -> None:
    result = run_cli(
        capsys, "--db", two_scans, "changes", "--since", "2026-11-26", "--until", "2026-11-28"
    )
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "new host         10.0.0.3",
        "gone host        10.0.0.2",
        "port opened      10.0.0.1 587/tcp",
        "port opened      10.0.0.3 25/tcp",
        "port closed      10.0.0.1 25/tcp",
    ]


def test_changes_csv_and_json_carry_the_same_rows(
    capsys: pytest.CaptureFixture[str], two_scans: str
) -> None:
    period = ("--since", "2026-11-26", "--until", "2026-11-28")
    as_json = run_cli(capsys, "--db", two_scans, "changes", *period, "--format", "json")
    as_csv = run_cli(capsys, "--db", two_scans, "changes", *period, "--format", "csv")
    assert as_json.code == as_csv.code == 0
    rows = json.loads(as_json.out)
    assert rows[0] == {"change": "new-asset", "address": "10.0.0.3", "detail": ""}
    assert {"change": "closed-port", "address": "10.0.0.1", "detail": "25/tcp"} in rows
    assert list(csv.DictReader(io.StringIO(as_csv.out))) == rows


def test_changes_before_anything_happened_says_so(
    capsys: pytest.CaptureFixture[str], two_scans: str
) -> None:
    period = ("--since", "2026-01-01", "--until", "2026-01-02")
    result = run_cli(capsys, "--db", two_scans, "changes", *period)
    assert result.code == 0
    assert result.out == "no changes from 2026-01-01 00:00:00 to 2026-01-02 00:00:00 UTC\n"
    as_json = run_cli(capsys, "--db", two_scans, "changes", *period, "--format", "json")
    assert json.loads(as_json.out) == []


def test_changes_shows_roles_and_findings_as_the_report_does(
    capsys: pytest.CaptureFixture[str], report_database: str
) -> None:
    period = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat())
    result = run_cli(capsys, "--db", report_database, "changes", *period, "--format", "json")
    assert result.code == 0, result.err
    store = Store.open(report_database)
    try:
        with store.read("read the changes") as connection:
            expected = list(change_rows(changes_between(connection, SINCE, UNTIL)))
    finally:
        store.close()
    assert json.loads(result.out) == expected
    kinds = {row["change"] for row in expected}
    assert {"new-role", "new-finding"} <= kinds
    text = run_cli(capsys, "--db", report_database, "changes", *period)
    assert any(line.startswith("role gained ") for line in text.out.splitlines())
    assert any(line.startswith("new finding ") for line in text.out.splitlines())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--since", "yesterday"), "--since: 'yesterday' is not a date like 2026-01-31"),
        (("--since", "2026-11-28", "--until", "2026-11-27"), "the period is empty"),
        (("--since", "2026-11-26", "--format", "xml"), "'xml' is not one of"),
    ],
)
def test_changes_refuses_bad_periods(
    capsys: pytest.CaptureFixture[str], two_scans: str, args: tuple[str, ...], expected: str
) -> None:
    result = run_cli(capsys, "--db", two_scans, "changes", *args)
    assert result.code == 2
    assert expected in result.err
    assert "Traceback" not in result.err
