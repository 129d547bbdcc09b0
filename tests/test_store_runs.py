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

from rolecall.inventory.database import database_url, make_engine
from rolecall.inventory.process_owner import this_process
from rolecall.inventory.store import Store
from rolecall.inventory.tables import RUN_TABLE
from tests.inventory_sql import is_postgres, query
from tests.nmap_samples import write_scan

CLI = [sys.executable, "-c", "from rolecall.orchestrator.cli.app import entry; entry()"]


def _run_rows(db: str) -> list[tuple[str, str, dict[str, int], str, bool]]:
    """(kind, status, counts, error, ended) of every run, oldest first."""
    rows = query(db, "SELECT kind, status, counts, error, ended FROM run ORDER BY id")
    return [
        (kind, status, json.loads(counts), error, ended is not None)
        for kind, status, counts, error, ended in rows
    ]


def _status(db: str, run_id: int) -> tuple[str, str]:
    """(status, error) of one run."""
    ((status, error),) = query(db, "SELECT status, error FROM run WHERE id = :id", id=run_id)
    return str(status), str(error)


def test_a_run_ends_ok_or_as_marked_with_what_it_counted(database: str) -> None:
    store = Store.open(database)
    with store.run("scan", "127.0.0.1") as run:
        run.counts["records"] += 3
    with store.run("ingest pcap", "a.pcap b.pcap") as run:
        run.counts["files"] = 1
        run.mark("partial", "b.pcap: not a capture")
    with store.run("ingest zeek", "c.log") as run:
        run.mark("failed", "c.log: not a Zeek log")
    store.close()
    assert _run_rows(database) == [
        ("scan", "ok", {"records": 3}, "", True),
        ("ingest pcap", "partial", {"files": 1}, "b.pcap: not a capture", True),
        ("ingest zeek", "failed", {}, "c.log: not a Zeek log", True),
    ]
    owners = set(query(database, "SELECT owner_host, owner_pid, owner_process FROM run"))
    assert owners == {tuple(vars(this_process()).values())}


def _counted_then_raised(store: Store, kind: str, what: str, error: BaseException) -> None:
    """A run that counts something, then raises error."""
    with store.run(kind, "target") as run:
        run.counts[what] = 7
        raise error


def test_an_error_fails_the_run_and_ctrl_c_interrupts_it_both_raised_again(
    database: str,
) -> None:
    store = Store.open(database)
    with pytest.raises(ValueError, match="nmap said no"):
        _counted_then_raised(store, "scan", "records", ValueError("nmap said no"))
    with pytest.raises(KeyboardInterrupt):
        _counted_then_raised(store, "ingest pcap", "files", KeyboardInterrupt())
    store.close()
    assert _run_rows(database) == [
        ("scan", "failed", {"records": 7}, "nmap said no", True),
        ("ingest pcap", "interrupted", {"files": 7}, "interrupted by the user", True),
    ]


def test_the_first_recorded_end_stands(database: str) -> None:
    """A daemon's forced stop marks a job's runs interrupted; the job's own end comes too late."""
    store = Store.open(database)
    with (
        store.run("scheduled scan", "lab: 127.0.0.1") as outer,
        store.run("scan", "127.0.0.1") as inner,
    ):
        stopped = store.interrupt_open_runs("the daemon stopped (SIGTERM)")
        assert stopped == [outer.id, inner.id]
    assert store.interrupt_open_runs("again") == []
    store.close()
    assert [row[:2] for row in _run_rows(database)] == [
        ("scheduled scan", "interrupted"),
        ("scan", "interrupted"),
    ]
    assert {row[3] for row in _run_rows(database)} == {"the daemon stopped (SIGTERM)"}


def _wait_for(condition_met: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll a condition until it holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition_met():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _running_ids(db: str) -> list[int]:
    """Ids of the runs recorded as running."""
    return [row[0] for row in query(db, "SELECT id FROM run WHERE status = 'running'")]


def _batches_written(db: str) -> bool:
    """Whether an ingest's open transaction holds written batches (not yet committed)."""
    if not is_postgres(db):
        wal = Path(f"{db}-wal")
        return wal.exists() and wal.stat().st_size > 1_000_000
    # A transaction that has inserted into asset holds its RowExclusiveLock until it ends.
    locks = query(
        db,
        "SELECT count(*) FROM pg_locks JOIN pg_class ON pg_locks.relation = pg_class.oid"
        " WHERE pg_class.relname = 'asset' AND pg_locks.mode = 'RowExclusiveLock'"
        " AND pg_locks.pid <> pg_backend_pid()",
    )
    return bool(locks[0][0] > 0)


def test_a_killed_ingest_is_marked_interrupted_when_the_inventory_next_opens(
    database: str, tmp_path: Path
) -> None:
    Store.open(database).close()
    scan = write_scan(tmp_path / "huge.xml", 400_000)
    proc = subprocess.Popen(
        [*CLI, "--db", database, "-q", "ingest", "nmap-xml", str(scan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: bool(_running_ids(database)), "the ingest's run")
        # Mid-write: batches are in its open transaction.
        _wait_for(lambda: _batches_written(database), "the ingest's first batches")
        assert proc.poll() is None, "the ingest finished before it could be killed"
        (run_id,) = _running_ids(database)

        # Another command opening the inventory meanwhile leaves the live ingest's run alone.
        Store.open(database).close()
        assert _status(database, run_id) == ("running", "")
    finally:
        proc.kill()
        proc.communicate(timeout=60)

    store = Store.open(database)
    store.close()
    status, error = _status(database, run_id)
    assert status == "interrupted"
    assert error == (
        f"interrupted: its process (pid {proc.pid} on {socket.gethostname()})"
        " ended before the run did"
    )
    assert query(database, "SELECT count(*) FROM asset") == [(0,)]


def _insert_running(db: str | Path, host: str, pid: int, process: str) -> int:
    """Record a run as running, owned as given, the way a process would have left it."""
    engine = make_engine(database_url(str(db)))
    try:
        with engine.begin() as connection:
            result = connection.execute(
                RUN_TABLE.insert().values(
                    kind="scan", target="t", started=datetime.now(UTC), status="running",
                    counts="{}", error="", owner_host=host, owner_pid=pid, owner_process=process,
                )
            )  # fmt: skip
            assert result.inserted_primary_key is not None
            run_id: int = result.inserted_primary_key[0]
            return run_id
    finally:
        engine.dispose()


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_only_runs_whose_process_is_provably_gone_are_marked(database: str) -> None:
    Store.open(database).close()
    here = this_process()
    machine, boot, namespace, start = here.process.split(" ")
    other_boot = "00000000-0000-0000-0000-000000000000"
    gone = {
        "dead pid": _insert_running(database, here.host, _dead_pid(), here.process),
        "pid reused": _insert_running(
            database, here.host, here.pid, f"{machine} {boot} {namespace} {int(start) - 1}"
        ),
    }
    alive = {
        "this process": _insert_running(database, here.host, here.pid, here.process),
        "another host": _insert_running(database, "elsewhere", _dead_pid(), here.process),
        "another machine, same name": _insert_running(
            database, here.host, here.pid, f"other-machine {other_boot} {namespace} {start}"
        ),
        "another pid namespace": _insert_running(
            database, here.host, _dead_pid(), f"{machine} {boot} pid:[1] {start}"
        ),
        "recorded before owners were": _insert_running(database, "", 0, ""),
    }
    # A later boot proves a restart only where the machine has an id to tell it by.
    (gone if machine != "-" else alive)["rebooted since"] = _insert_running(
        database, here.host, here.pid, f"{machine} {other_boot} {namespace} {start}"
    )
    Store.open(database).close()
    for what, run_id in gone.items():
        assert _status(database, run_id)[0] == "interrupted", what
    for what, run_id in alive.items():
        assert _status(database, run_id) == ("running", ""), what


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
        assert _status(str(db_path), run_id)[0] == "running"
    finally:
        writer.rollback()
        writer.close()
    Store.open(str(db_path)).close()
    assert _status(str(db_path), run_id)[0] == "interrupted"


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
    database: str,
) -> None:
    Store.open(database).close()
    here = this_process()
    machine, boot, namespace, _ = here.process.split(" ")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[19]
        owned = f"{machine} {boot} {namespace} {start}"
        run_id = _insert_running(database, here.host, child.pid, owned)
        Store.open(database).close()
        assert _status(database, run_id)[0] == "running"
        os.kill(child.pid, signal.SIGKILL)
        _wait_for(
            lambda: (
                Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
            ),
            "the child to become a zombie",
        )
        Store.open(database).close()  # not reaped yet: a zombie runs nothing
        assert _status(database, run_id)[0] == "interrupted"
    finally:
        child.kill()
        child.wait()
