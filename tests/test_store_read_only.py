"""A database that refuses writes: one sentence naming it, exit status 2, nothing stored lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rolecall.inventory.process_owner import this_process
from rolecall.inventory.store import Store
from tests.nmap_samples import HEAD, TAIL, host_xml

CLI = [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]


def rolecall(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line in a process of its own, as a user does.

    In-process, SQLite would reuse a descriptor an earlier connection opened for writing.
    """
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=120)


@contextmanager
def read_only(db: Path) -> Iterator[str]:
    """Make the inventory file refuse writes for the block; yield what to pass as --db.

    Root writes through file modes, so as root the file is made immutable instead; where
    the filesystem has no such attribute, SQLite is asked to open the file read-only.
    """
    if os.geteuid() != 0:
        db.chmod(0o400)
        try:
            yield str(db)
        finally:
            db.chmod(0o600)
        return
    immutable = subprocess.run(["chattr", "+i", str(db)], capture_output=True, check=False)
    if immutable.returncode != 0:
        yield f"sqlite:///file:{db}?mode=ro&uri=true"
        return
    try:
        yield str(db)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


def _counts(db: Path) -> dict[str, int]:
    """Row counts of the tables an ingest writes, and of the runs."""
    with sqlite3.connect(db) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("asset", "observation", "service", "ingested_file", "run")
        }


def _abandoned_run(db: Path) -> int:
    """A run left running by a process of this host that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    here = this_process()
    with sqlite3.connect(db) as conn:
        cursor = conn.execute(
            "INSERT INTO run (kind, target, started, status, counts, error, owner_host,"
            " owner_pid, owner_process) VALUES ('scan', 't', ?, 'running', '{}', '', ?, ?, ?)",
            (
                f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}",
                here.host,
                int(done.stdout),
                here.process,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def test_a_read_only_inventory_is_one_sentence_exit_2_and_loses_nothing(
    db_path: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.xml"
    first.write_text(HEAD + host_xml("10.1.1.1", 25) + TAIL)
    assert rolecall("--db", str(db_path), "-q", "ingest", "nmap-xml", str(first)).returncode == 0
    abandoned = _abandoned_run(db_path)
    before = _counts(db_path)
    second = tmp_path / "second.xml"
    second.write_text(HEAD + host_xml("10.1.1.2", 25) + TAIL)

    with read_only(db_path) as target:
        refused = rolecall("--db", target, "-q", "ingest", "nmap-xml", str(second))
        # Reading still works; the abandoned run waits for a database that takes writes.
        listed = rolecall("--db", target, "export", "runs", "--format", "json")

    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert lines[0].startswith("rolecall: cannot record the start of a run in database ")
    assert str(db_path) in lines[0]
    assert lines[0].endswith(": attempt to write a readonly database")
    assert "INSERT" not in refused.stderr
    assert listed.returncode == 0, listed.stderr
    assert [run["status"] for run in json.loads(listed.stdout)] == ["ok", "running"]
    assert _counts(db_path) == before

    Store.open(str(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        status = conn.execute("SELECT status FROM run WHERE id = ?", (abandoned,)).fetchone()
    assert status == ("interrupted",)
    assert rolecall("--db", str(db_path), "-q", "ingest", "nmap-xml", str(second)).returncode == 0
