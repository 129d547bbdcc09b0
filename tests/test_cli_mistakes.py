"""Mistakes refused: unknown names, missing inventories and files, misplaced options."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.nmap_samples import HEAD, TAIL, host_xml


def _one_sentence(err: str) -> str:
    """Assert stderr is one line without a traceback and return it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rolecall: ")
    return lines[0]


@pytest.fixture
def inventory(tmp_path: Path, db_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An inventory holding one nmap scan of one host."""
    scan = tmp_path / "scan.xml"
    scan.write_text(HEAD + host_xml("10.0.0.1", 25) + TAIL)
    result = run_cli(capsys, "--db", str(db_path), "-q", "ingest", "nmap-xml", str(scan))
    assert result.code == 0, result.err
    return db_path


def _runs(capsys: pytest.CaptureFixture[str], db: Path) -> list[dict[str, str]]:
    """The runs the inventory recorded."""
    result = run_cli(capsys, "--db", str(db), "export", "runs")
    assert result.code == 0, result.err
    return list(csv.DictReader(io.StringIO(result.out)))


def test_unknown_rule_is_refused_naming_the_rules(
    capsys: pytest.CaptureFixture[str], inventory: Path
) -> None:
    result = run_cli(capsys, "--db", str(inventory), "findings", "list", "--rule", "open_relay")
    assert result.code == 2
    line = _one_sentence(result.err)
    assert "'open_relay' is not a rule id" in line
    assert "open-relay" in line
    assert "open-socks-proxy" in line
    known = run_cli(capsys, "--db", str(inventory), "findings", "list", "--rule", "open-relay")
    assert known.code == 0, known.err


def test_unknown_group_is_refused_naming_the_groups(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text('[[groups]]\nname = "dmz"\nnetworks = ["10.0.0.0/24"]\n')
    base = ("--config", str(config), "--db", str(inventory), "history", "show", "smtp_clients")
    result = run_cli(capsys, *base, "--group", "dnz")
    assert result.code == 2
    assert "'dnz' is not a group; the groups are dmz" in _one_sentence(result.err)
    assert result.out == ""
    assert run_cli(capsys, *base, "--group", "dmz").code == 0
    bare = run_cli(
        capsys, "--db", str(inventory), "history", "show", "smtp_clients", "--group", "x"
    )
    assert bare.code == 2
    assert "the groups are none" in bare.err


@pytest.mark.parametrize(
    "command",
    [
        ("export", "runs"),
        ("report", "--format", "json"),
        ("report", "email", "--to", "soc@example.org"),
        ("findings", "list"),
        ("findings", "derive"),
        ("groups", "mail-clients"),
        ("history", "show", "smtp_clients"),
        ("mail", "cluster", "subject", "--on", "rcpt"),
        ("changes", "--since", "2026-01-01"),
        ("schedule", "list"),
        ("schedule", "remove", "nightly"),
        ("runs",),
    ],
)
def test_read_only_commands_do_not_create_an_inventory(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "typo.db"
    for target in (str(db), f"sqlite:///{db}"):
        result = run_cli(capsys, "--db", target, *command)
        assert result.code == 2
        assert _one_sentence(result.err).startswith(f"rolecall: no inventory at {db}")
        assert list(tmp_path.iterdir()) == []


def test_export_to_dash_writes_stdout(
    capsys: pytest.CaptureFixture[str],
    inventory: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        capsys, "--db", str(inventory), "export", "inventory", "--format", "jsonl", "-o", "-"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out.splitlines()[0])["address"] == "10.0.0.1"
    assert not (tmp_path / "-").exists()


def test_report_to_dash_writes_stdout(
    capsys: pytest.CaptureFixture[str],
    inventory: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    period = ("--since", "2026-11-01", "--until", "2026-12-01")
    as_json = run_cli(
        capsys, "--db", str(inventory), "report", *period, "--format", "json", "-o", "-"
    )
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out)["period"]["since"].startswith("2026-11-01T00:00:00")
    as_html = run_cli(capsys, "--db", str(inventory), "report", *period, "-o", "-")
    assert as_html.code == 0, as_html.err
    assert as_html.out.lstrip().lower().startswith("<!doctype html>")
    as_csv = run_cli(
        capsys, "--db", str(inventory), "report", *period, "--format", "csv", "-o", "-"
    )
    assert as_csv.code == 2
    assert "writes two files" in _one_sentence(as_csv.err)
    assert not (tmp_path / "-").exists()
    assert not (tmp_path / "--changes.csv").exists()


@pytest.mark.parametrize("command", [("report",), ("export", "inventory")])
def test_output_into_a_missing_folder_is_refused(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    out = tmp_path / "no-such-folder" / "out.html"
    result = run_cli(capsys, "--db", str(inventory), *command, "-o", str(out))
    assert result.code == 2
    assert _one_sentence(result.err).startswith(f"rolecall: cannot write {out}: ")
    assert not out.parent.exists()


def test_missing_ingest_file_is_not_a_run(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path
) -> None:
    before = _runs(capsys, inventory)
    missing = tmp_path / "scna.xml"
    result = run_cli(capsys, "--db", str(inventory), "ingest", "nmap-xml", str(missing))
    assert result.code == 2
    assert _one_sentence(result.err) == (
        f"rolecall: no such file: {missing} (nothing ingested, no run recorded)"
    )
    assert _runs(capsys, inventory) == before
    fresh = tmp_path / "fresh.db"
    assert run_cli(capsys, "--db", str(fresh), "ingest", "pcap", str(missing)).code == 2
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("options", "named", "example"),
    [
        (("--db", "x.db"), "--db", "rolecall --db PATH COMMAND"),
        (("--db=x.db",), "--db", "rolecall --db PATH COMMAND"),
        (("-q",), "-q", "rolecall -q COMMAND"),
        (("--config", "x.toml"), "--config", "rolecall --config FILE COMMAND"),
    ],
)
def test_global_options_after_the_command_say_where_they_go(
    capsys: pytest.CaptureFixture[str],
    inventory: Path,
    options: tuple[str, ...],
    named: str,
    example: str,
) -> None:
    result = run_cli(capsys, "--db", str(inventory), "export", "runs", *options)
    assert result.code == 2
    line = _one_sentence(result.err)
    assert line.startswith(f"rolecall: {named} is a global option: give it before the command")
    assert example in line
    assert result.out == ""
