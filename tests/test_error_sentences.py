"""Bad input and faults end in one sentence on stderr and exit 2: never an internal error."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import Result, run_cli
from tests.nmap_samples import HEAD, TAIL, host_xml

CLI = [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def one_sentence(result: Result | subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The one line a failed command said, checked: its status, no traceback, no internal error."""
    err = result.err if isinstance(result, Result) else result.stderr
    code = result.code if isinstance(result, Result) else result.returncode
    assert "Traceback" not in err
    assert "internal error" not in err
    assert code == status, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rolecall: ")
    return lines[0]


@pytest.fixture
def inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """An inventory with one host."""
    scan = tmp_path / "scan.xml"
    scan.write_text(HEAD + host_xml("10.0.0.5", 25, banner="220 mx") + TAIL)
    db = str(tmp_path / "inventory.db")
    assert run_cli(capsys, "-q", "--db", db, "ingest", "nmap-xml", str(scan)).code == 0
    return db


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["report", "--last", "99999999999d", "-o", "-"], "--last: '99999999999d' is longer"),
        (["report", "--last", "9" * 40 + "h", "-o", "-"], "--last:"),
        (["report", "--since", "0001-01-01", "-o", "-"], "--since: '0001-01-01' is not between"),
        (["report", "--until", "0001-01-01T00:00:00-05:00", "-o", "-"], "--until:"),
        (["changes", "--since", "0001-01-01"], "--since:"),
        (["history", "show", "smtp_clients", "--until", "0001-01-03"], "--until:"),
        (["mail", "cluster", "subject", "--on", "rcpt", "--until", "0001-01-01"], "--until:"),
        (["schedule", "add", "ingest", "--watch", ".", "--every", "9" * 25], "schedule every:"),
        (["schedule", "add", "ingest", "--watch", ".", "--every", "999999999999"], "every:"),
    ],
)
def test_numbers_that_become_dates_are_checked(
    capsys: pytest.CaptureFixture[str], inventory: str, args: list[str], said: str
) -> None:
    """Durations and dates too far out are refused with a sentence, not an OverflowError."""
    assert said in one_sentence(run_cli(capsys, "--db", inventory, *args))


def test_an_overdue_schedule_is_listed(capsys: pytest.CaptureFixture[str], inventory: str) -> None:
    """A schedule whose next run has passed (the daemon was down) is listed like any other."""
    added = run_cli(capsys, "--db", inventory, "schedule", "add", "ingest", "--watch", ".")
    assert added.code == 0
    with sqlite3.connect(inventory) as connection:
        connection.execute("UPDATE schedule SET next_run = '2001-01-01 00:00:00.000000'")
    listed = run_cli(capsys, "--db", inventory, "schedule", "list")
    assert listed.code == 0
    assert listed.err == ""
    assert "2001-01-01T00:00:00" in listed.out


def test_quiet_hides_progress_but_not_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--quiet drops the progress lines; a file that could not be read is still said."""
    broken = tmp_path / "broken.xml"
    broken.write_text(HEAD + "<host><status")
    db = str(tmp_path / "inventory.db")
    loud = run_cli(capsys, "--db", db, "ingest", "nmap-xml", str(broken))
    quiet = run_cli(capsys, "-q", "--db", db, "ingest", "nmap-xml", str(broken))
    assert loud.code == quiet.code == 2
    assert "ingesting nmap-xml" in loud.err
    assert "ingesting nmap-xml" not in quiet.err
    assert "broken.xml" in one_sentence(quiet)


def test_quiet_keeps_error_sentences(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An error from the command line is said under --quiet too."""
    result = run_cli(capsys, "-q", "--db", str(tmp_path / "none.db"), "findings", "list")
    assert "no inventory at" in one_sentence(result)


CONFIGS = {
    "firewall.timezone": ('[firewall]\ntimezone = "Mars/Olympus"\n', ["findings", "derive"]),
    "probes.enabled": ('[probes]\nenabled = ["smtp", "nope"]\n', ["scan", "subnet", "127.0.0.1"]),
    "groups.g.roles": (
        '[[groups]]\nname = "g"\nroles = ["wizard"]\nnetworks = ["10.0.0.0/8"]\n',
        ["findings", "derive"],
    ),
    "findings.blocklists": ('[findings]\nblocklists = ["/nonexistent"]\n', ["findings", "derive"]),
    "geo.databases": (
        '[geo]\ndatabases = ["/nonexistent.mmdb"]\n',
        ["mail", "cluster", "subject", "--on", "rcpt"],
    ),
}


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_config_errors_found_after_loading_name_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, inventory: str, key: str
) -> None:
    """A bad value found when settings are built names the config file and the key."""
    text, args = CONFIGS[key]
    if key == "firewall.timezone":
        log = tmp_path / "fw.log"
        log.write_text("Jan  1 00:00:01 fw kernel: OUT-DENY SRC=10.0.0.9 DST=192.0.2.1\n")
        args = ["ingest", "firewall", str(log)]
    config = tmp_path / "rolecall.toml"
    config.write_text(text)
    said = one_sentence(run_cli(capsys, "--config", str(config), "--db", inventory, *args))
    assert said.startswith(f"rolecall: {config}: {key}: "), said


@pytest.fixture
def shared_inventory(inventory: str) -> Iterator[Path]:
    """A copy of the inventory, owned by root, readable by all, in a folder nobody can read."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the command line as another user")
    folder = Path(tempfile.mkdtemp(prefix="rolecall-ro-"))
    try:
        folder.chmod(0o755)
        db = folder / "inventory.db"
        shutil.copy(inventory, db)
        db.chmod(0o644)
        yield db
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("folder_mode", [0o755, 0o1777])
@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "nmap-xml", "scan.xml"],
        ["findings", "derive"],
        ["schedule", "add", "ingest", "--watch", "."],
        ["findings", "ack", "open-relay", "10.0.0.5"],
    ],
)
def test_a_database_that_cannot_be_written_is_one_sentence(
    shared_inventory: Path, folder_mode: int, args: list[str]
) -> None:
    """As a user who may only read the inventory: one sentence naming it, nothing lost."""
    folder = shared_inventory.parent
    folder.chmod(folder_mode)
    scan = folder / "scan.xml"
    scan.write_text(HEAD + host_xml("10.0.0.6", 25) + TAIL)
    scan.chmod(0o644)
    before = shared_inventory.read_bytes()
    done = subprocess.run(
        [*NOBODY, *CLI, "-q", "--db", str(shared_inventory), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=folder,
    )
    said = one_sentence(done)
    assert f"database {shared_inventory}" in said
    assert "cannot" in said
    assert "SELECT" not in said
    assert "INSERT" not in said
    assert shared_inventory.read_bytes() == before
