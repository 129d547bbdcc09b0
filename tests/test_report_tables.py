"""`rolecall report --format csv|json`: findings and changes a spreadsheet opens cleanly."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction
from rolecall.reports.tabular import write_rows
from tests.cli_helpers import run_cli
from tests.report_helpers import SINCE, UNTIL, build_inventory

PERIOD = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())
FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture(scope="module")
def inventory(module_database: str) -> str:
    """A derived inventory whose mail includes a formula-shaped sender host name."""
    store = build_inventory(module_database)
    with store.writer() as writer:
        writer.add(
            SmtpTransaction(
                UNTIL.replace(hour=0) - (UNTIL - SINCE) / 2,
                "10.10.1.77",
                41000,
                "203.0.113.25",
                25,
                "pcap",
                user_agent="The Bat! " + FORMULA,
            )
        )
    store.derive()
    store.close()
    return module_database


def test_csv_has_bom_and_neutralised_formulas(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    out = tmp_path / "week.csv"
    result = run_cli(
        capsys,
        "--db",
        inventory,
        "report",
        *PERIOD,
        "--format",
        "csv",
        "--bom",
        "-o",
        str(out),
    )
    assert result.code == 0, result.err
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfchange,rule,address,severity,summary,evidence")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {row["change"] for row in rows} <= {"new", "open", "resolved"}
    assert any(row["rule"] == "mass-mailer-software" for row in rows)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))
    changes = (tmp_path / "week-changes.csv").read_bytes().decode("utf-8-sig")
    assert changes.startswith("change,address,detail\r\n")
    assert "new-finding,10.10.1.77," in changes


def test_csv_without_bom_starts_with_the_header(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    out = tmp_path / "plain.csv"
    result = run_cli(
        capsys, "--db", inventory, "report", *PERIOD, "--format", "csv", "-o", str(out)
    )
    assert result.code == 0, result.err
    assert out.read_bytes().startswith(b"change,rule,")


def test_json_has_period_summary_findings_and_changes(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    out = tmp_path / "week.json"
    result = run_cli(
        capsys, "--db", inventory, "report", *PERIOD, "--format", "json", "-o", str(out)
    )
    assert result.code == 0, result.err
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["period"] == {
        "since": "2026-02-23T00:00:00.000000Z",
        "until": "2026-03-02T00:00:00.000000Z",
    }
    new = [row for row in document["findings"] if row["change"] == "new"]
    assert document["summary"]["new_findings"] == len(new) > 0
    assert all(row["evidence"] for row in new)
    kinds = {row["change"] for row in document["changes"]}
    assert "new-finding" in kinds
    store = Store.open(inventory)
    with store.read("read rows") as connection:
        open_rows = connection.exec_driver_sql(
            "select count(*) from finding where status = 'open'"
        ).scalar_one()
    store.close()
    assert sum(document["summary"]["open_findings_by_severity"].values()) == open_rows


def test_unwritable_output_is_exit_2(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = run_cli(
        capsys,
        "--db",
        inventory,
        "report",
        *PERIOD,
        "--format",
        "json",
        "-o",
        str(blocker / "out.json"),
    )
    assert result.code == 2
    assert result.err.startswith(f"rolecall: cannot write {blocker / 'out.json'}")


def test_write_rows_neutralises_formulas_and_writes_the_bom() -> None:
    out = io.StringIO()
    rows = [{"a": FORMULA, "b": "-1+2", "c": ["@x", "y"]}]
    assert write_rows(rows, ("a", "b", "c"), "csv", out, bom=True) == 1
    text = out.getvalue()
    assert text.startswith("\ufeffa,b,c\r\n")
    parsed = next(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert parsed == {"a": "'" + FORMULA, "b": "'-1+2", "c": "'@x;y"}
