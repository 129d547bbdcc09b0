"""One run lifecycle: ok, partial, failed, interrupted; runs of dead processes marked on open."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rolecall.inventory.process_owner import this_process
from rolecall.inventory.store import Store
from tests.nmap_samples import write_scan

CLI = [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]


def _run_rows(db: Path) -> list[tuple[str, str, dict[str, int], str, bool]]:
    """(kind, status, counts, error, ended) of every run, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, status, counts, error, ended FROM run ORDER BY id")
        return [
            (kind, status, json.loads(counts), error, ended is not None)
            for kind, status, counts, error, ended in rows
        ]


def _status(db: Path, run_id: int) -> tuple[str, str]:
    """(status, error) of one run."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status, error FROM run WHERE id = ?", (run_id,)).fetchone()
    return str(row[0]), str(row[1])


def test_a_run_ends_ok_or_as_marked_with_what_it_counted(db_path: Path) -> None:
    store = Store.open(str(db_path))
    with store.run("scan", "127.0.0.1") as run:
        run.counts["records"] += 3
    with store.run("ingest pcap", "a.pcap b.pcap") as run:
        run.counts["files"] = 1
        run.mark("partial", "b.pcap: not a capture")
    with store.run("ingest zeek", "c.log") as run:
        run.mark("failed", "c.log: not a Zeek log")
    store.close()
    assert _run_rows(db_path) == [
        ("scan", "ok", {"records": 3}, "", True),
        ("ingest pcap", "partial", {"files": 1}, "b.pcap: not a capture", True),
        ("ingest zeek", "failed", {}, "c.log: not a Zeek log", True),
    ]
    with sqlite3.connect(db_path) as conn:
        owners = set(conn.execute("SELECT owner_host, owner_pid, owner_process FROM run"))
    assert owners == {tuple(vars(this_process()).values())}


def _counted_then_raised(store: Store, kind: str, what: str, error: BaseException) -> None:
    """A run that counts something, then raises error."""
    with store.run(kind, "target") as run:
        run.counts[what] = 7
        raise error


def test_an_error_fails_the_run_and_ctrl_c_interrupts_it_both_raised_again(
    db_path: Path,
) -> None:
    store = Store.open(str(db_path))
    with pytest.raises(ValueError, match="nmap said no"):
        _counted_then_raised(store, "scan", "records", ValueError("nmap said no"))
    with pytest.raises(KeyboardInterrupt):
        _counted_then_raised(store, "ingest pcap", "files", KeyboardInterrupt())
    store.close()
    assert _run_rows(db_path) == [
        ("scan", "failed", {"records": 7}, "nmap said no", True),
        ("ingest pcap", "interrupted", {"files": 7}, "interrupted by the user", True),
    ]


def test_the_first_recorded_end_stands(db_path: Path) -> None:
    """A daemon's forced stop marks a job's runs interrupted; the job's own end comes too late."""
    store = Store.open(str(db_path))
    with (
        store.run("scheduled scan", "lab: 127.0.0.1") as outer,
        store.run("scan", "127.0.0.1") as inner,
    ):
        stopped = store.interrupt_open_runs("the daemon stopped (SIGTERM)")
        assert stopped == [outer.id, inner.id]
    assert store.interrupt_open_runs("again") == []
    store.close()
    assert [row[:2] for row in _run_rows(db_path)] == [
        ("scheduled scan", "interrupted"),
        ("scan", "interrupted"),
    ]
    assert {row[3] for row in _run_rows(db_path)} == {"the daemon stopped (SIGTERM)"}


def _wait_for(condition_met: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll a condition until it holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition_met():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _running_ids(db: Path) -> list[int]:
    """Ids of the runs recorded as running."""
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM run WHERE status = 'running'")]


def test_a_killed_ingest_is_marked_interrupted_when_the_inventory_next_opens(
    db_path: Path, tmp_path: Path
) -> None:
    Store.open(str(db_path)).close()
    scan = write_scan(tmp_path / "huge.xml", 400_000)
    proc = subprocess.Popen(
        [*CLI, "--db", str(db_path), "-q", "ingest", "nmap-xml", str(scan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wal = Path(f"{db_path}-wal")
        _wait_for(lambda: bool(_running_ids(db_path)), "the ingest's run")
        # Mid-write: batches are in its open transaction.
        _wait_for(
            lambda: wal.exists() and wal.stat().st_size > 1_000_000, "the ingest's first batches"
        )
        assert proc.poll() is None, "the ingest finished before it could be killed"
        (run_id,) = _running_ids(db_path)

        # Another command opening the inventory meanwhile leaves the live ingest's run alone.
        Store.open(str(db_path)).close()
        assert _status(db_path, run_id) == ("running", "")
    finally:
        proc.kill()
        proc.communicate(timeout=60)

    store = Store.open(str(db_path))
    store.close()
    status, error = _status(db_path, run_id)
    assert status == "interrupted"
    assert error == (
        f"interrupted: its process (pid {proc.pid} on {socket.gethostname()})"
        " ended before the run did"
    )
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM asset").fetchone() == (0,)


def _insert_running(db: Path, host: str, pid: int, process: str) -> int:
    """Record a run as running, owned as given, the way a process would have left it."""
    with sqlite3.connect(db) as conn:
        cursor = conn.execute(
            "INSERT INTO run (kind, target, started, status, counts, error, owner_host,"
            " owner_pid, owner_process) VALUES ('scan', 't', ?, 'running', '{}', '', ?, ?, ?)",
            (f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}", host, pid, process),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_only_runs_whose_process_is_provably_gone_are_marked(db_path: Path) -> None:
    Store.open(str(db_path)).close()
    here = this_process()
    machine, boot, namespace, start = here.process.split(" ")
    other_boot = "00000000-0000-0000-0000-000000000000"
    gone = {
        "dead pid": _insert_running(db_path, here.host, _dead_pid(), here.process),
        "pid reused": _insert_running(
            db_path, here.host, here.pid, f"{machine} {boot} {namespace} {int(start) - 1}"
        ),
    }
    alive = {
        "this process": _insert_running(db_path, here.host, here.pid, here.process),
        "another host": _insert_running(db_path, "elsewhere", _dead_pid(), here.process),
        "another machine, same name": _insert_running(
            db_path, here.host, here.pid, f"other-machine {other_boot} {namespace} {start}"
        ),
        "another pid namespace": _insert_running(
            db_path, here.host, _dead_pid(), f"{machine} {boot} pid:[1] {start}"
        ),
        "recorded before owners were": _insert_running(db_path, "", 0, ""),
    }
    # A later boot proves a restart only where the machine has an id to tell it by.
    (gone if machine != "-" else alive)["rebooted since"] = _insert_running(
        db_path, here.host, here.pid, f"{machine} {other_boot} {namespace} {start}"
    )
    Store.open(str(db_path)).close()
    for what, run_id in gone.items():
        assert _status(db_path, run_id)[0] == "interrupted", what
    for what, run_id in alive.items():
        assert _status(db_path, run_id) == ("running", ""), what


def test_marking_never_waits_for_another_writer(db_path: Path) -> None:
    Store.open(str(db_path)).close()
    here = this_process()
    run_id = _insert_running(db_path, here.host, _dead_pid(), here.process)
    writer = sqlite3.connect(db_path)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock, as a long ingest does
        started = time.monotonic()
        Store.open(str(db_path)).close()
        assert time.monotonic() - started < 5.0  # not the 30 s busy timeout
        assert _status(db_path, run_id)[0] == "running"
    finally:
        writer.rollback()
        writer.close()
    Store.open(str(db_path)).close()
    assert _status(db_path, run_id)[0] == "interrupted"


def test_this_process_names_itself_as_the_kernel_sees_it() -> None:
    here = this_process()
    assert (here.host, here.pid) == (socket.gethostname(), os.getpid())
    machine, boot, namespace, start = here.process.split(" ")
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert namespace == os.readlink("/proc/self/ns/pid")
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert start == stat.rpartition(")")[2].split()[19]
    machine_id = Path("/etc/machine-id")
    assert machine == (machine_id.read_text().strip() if machine_id.exists() else "-")


def test_a_process_killed_by_a_signal_is_gone_once_reaped_or_while_a_zombie(
    db_path: Path,
) -> None:
    Store.open(str(db_path)).close()
    here = this_process()
    machine, boot, namespace, _ = here.process.split(" ")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[19]
        owned = f"{machine} {boot} {namespace} {start}"
        run_id = _insert_running(db_path, here.host, child.pid, owned)
        Store.open(str(db_path)).close()
        assert _status(db_path, run_id)[0] == "running"
        os.kill(child.pid, signal.SIGKILL)
        _wait_for(
            lambda: (
                Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
            ),
            "the child to become a zombie",
        )
        Store.open(str(db_path)).close()  # not reaped yet: a zombie runs nothing
        assert _status(db_path, run_id)[0] == "interrupted"
    finally:
        child.kill()
        child.wait()
