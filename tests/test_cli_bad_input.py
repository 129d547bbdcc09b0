"""Bad input: one clear sentence, exit status 2, no traceback, nothing stored lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.nmap_samples import BILLION_LAUGHS, EXTERNAL_ENTITY, HEAD, TAIL, host_xml, write_scan


def _one_sentence(err: str) -> str:
    """Assert stderr is one line without a traceback and return it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("rolecall: ")
    return lines[0]


def _counts(db: Path) -> dict[str, int]:
    """Row counts of the tables an import writes."""
    with sqlite3.connect(db) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("asset", "observation", "service", "hostname", "ingested_file")
        }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[scope\nallow = 1", "not valid TOML"),
        ("[scope]\nalow = []\n", "scope.alow: unknown setting"),
        ("[scan]\ntiming = '3'\n", "scan.timing: Input should be a valid integer"),
        ("[scan]\ntiming = 9\n", "scan.timing: Input should be less than or equal to 5"),
        ('[scope]\nallow = ["10.0.0.0/33"]\n', "scope.allow: '10.0.0.0/33' is not an address"),
        ('[scope]\nexclude = ["10.0.0.300"]\n', "scope.exclude: '10.0.0.300' is not an address"),
        ('[scan]\nports = "25,70000"\n', "scan.ports: '70000' is not a port"),
        ("[nonsense]\n", "nonsense: unknown setting"),
    ],
)
def test_malformed_config_names_key_and_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli(capsys, "--config", str(config), "export", "inventory")
    assert result.code == 2
    line = _one_sentence(result.err)
    assert line.startswith(f"rolecall: {config}: ")
    assert expected in line


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "--config", str(tmp_path / "nope.toml"), "export", "runs")
    assert result.code == 2
    assert "cannot read config file" in _one_sentence(result.err)


def test_malformed_ports_option(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    result = run_cli(capsys, "--db", str(db_path), "scan", "subnet", "127.0.0.1", "--ports", "x")
    assert result.code == 2
    assert "--ports" in _one_sentence(result.err)


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("/nonexistent-dir/inventory.db", "directory /nonexistent-dir does not exist"),
        ("/proc/rolecall.db", "cannot create database /proc/rolecall.db"),
        ("/tmp", "it is a directory"),
    ],
)
def test_unusable_database_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db: str, expected: str
) -> None:
    # An ingest creates the inventory: the path is refused when it cannot hold one.
    log = tmp_path / "kern.log"
    log.write_text("")
    result = run_cli(capsys, "--db", db, "ingest", "firewall", str(log))
    assert result.code == 2
    assert expected in _one_sentence(result.err)


def test_file_that_is_not_sqlite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 10)
    result = run_cli(capsys, "--db", str(db), "export", "inventory")
    assert result.code == 2
    assert _one_sentence(result.err) == f"rolecall: {db} is not an SQLite database"
    assert db.read_text().startswith("these are my notes")


def test_unsupported_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--db", "nosuchdialect://x/y", "export", "inventory")
    assert result.code == 2
    assert "cannot use database URL" in _one_sentence(result.err)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (BILLION_LAUGHS, "refused XML with entity declarations"),
        (EXTERNAL_ENTITY, "refused XML with entity declarations"),
        (HEAD + host_xml("10.0.0.1", 25) + "<host><status", "not well-formed XML at line"),
        ("", "empty file, not an nmap XML file"),
        ('<?xml version="1.0"?><html><body/></html>', "not an nmap XML file (root element <html>)"),
        (
            HEAD + '<runstats><finished exit="error" errormsg="Failed to resolve"/></runstats>',
            "nmap reported an error: Failed to resolve",
        ),
    ],
)
def test_bad_nmap_xml_is_refused_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, content: str, expected: str
) -> None:
    good = tmp_path / "good.xml"
    good.write_text(HEAD + host_xml("10.1.1.1", 25) + TAIL)
    assert run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(good)).code == 0
    before = _counts(db_path)

    bad = tmp_path / "bad.xml"
    bad.write_text(content)
    result = run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(bad))
    assert result.code == 2
    assert f"rolecall: {bad}: {expected}" in result.err
    assert "Traceback" not in result.err
    assert _counts(db_path) == before
    with sqlite3.connect(db_path) as conn:
        status = conn.execute("SELECT status, error FROM run ORDER BY id DESC").fetchone()
    assert status[0] == "failed"
    assert expected in status[1]


def test_corrupt_tail_of_a_large_import_rolls_back(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    # Large enough that the writer has flushed batches before the damage is reached.
    scan = write_scan(tmp_path / "big.xml", 30_000, corrupt_tail=True)
    result = run_cli(capsys, "--db", str(db_path), "ingest", "nmap-xml", str(scan))
    assert result.code == 2
    assert "not well-formed XML" in result.err
    assert _counts(db_path) == dict.fromkeys(_counts(db_path), 0)


def test_interrupted_import_leaves_the_database_as_it_was(db_path: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.xml"
    small.write_text(HEAD + host_xml("10.1.1.1", 25) + TAIL)
    cli = [
        sys.executable,
        "-c",
        "from rolecall.orchestrator.cli.app import entry; entry()",
        "--db",
        str(db_path),
    ]
    subprocess.run([*cli, "ingest", "nmap-xml", str(small)], check=True, capture_output=True)
    before = _counts(db_path)

    scan = write_scan(tmp_path / "huge.xml", 400_000)
    proc = subprocess.Popen(
        [*cli, "ingest", "nmap-xml", str(scan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wal = Path(f"{db_path}-wal")
    deadline = time.monotonic() + 60
    # Wait until the import has written batches into its open transaction.
    while time.monotonic() < deadline and (not wal.exists() or wal.stat().st_size < 1_000_000):
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "rolecall: interrupted"
    assert _counts(db_path) == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT status FROM run ORDER BY id DESC").fetchone() == (
            "interrupted",
        )


@pytest.mark.parametrize("network", ["bogus", "192.0.2.0/24", "127.0.60.0/30"])
def test_demo_network_must_be_a_loopback_lab(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, network: str
) -> None:
    result = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"), "--network", network)
    assert result.code == 2
    assert "demo network" in result.err
    assert "Traceback" not in result.err
