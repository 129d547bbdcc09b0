"""SIGTERM, as a service manager or `kill` sends it: rolecall stops as on Ctrl-C, exit 143.

The stops every command shares with Ctrl-C are in test_ctrl_c.py, parametrised by signal.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.orchestrator.interrupts import TERMINATED_STATUS, raise_terminated, uninterrupted
from tests.cli_helpers import Listener
from tests.daemon_helpers import rolecall
from tests.signal_helpers import (
    SIGTERM,
    STOP_SECONDS,
    large_nmap_xml,
    long_quiet_capture,
    send,
    start,
    wait_for_running_run,
)


def _hosts_up(db: Path) -> set[str]:
    """The addresses the inventory saw up."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT address FROM observation WHERE kind = 'host-up'").fetchall()
    return {row[0] for row in rows}


def test_sigterm_stops_a_capture_ingest_and_keeps_what_was_stored(tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    earlier = tmp_path / "earlier.xml"
    large_nmap_xml(earlier, 3)
    assert (
        rolecall("--db", str(db), "ingest", "nmap-xml", str(earlier), cwd=tmp_path).returncode == 0
    )
    capture = tmp_path / "large.pcap"
    long_quiet_capture(capture, 2_000_000)
    proc = start("--db", str(db), "ingest", "pcap", str(capture), cwd=tmp_path)
    wait_for_running_run(db, proc)
    time.sleep(0.3)
    assert proc.poll() is None, "the capture was read before the signal"
    seconds, err = send(proc, SIGTERM, whole_group=False)

    assert seconds < STOP_SECONDS
    assert proc.returncode == 143
    assert err.strip() == "rolecall: terminated"
    listed = rolecall("--db", str(db), "runs", "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    shown = [(run["kind"], run["status"], run["error"]) for run in json.loads(listed.stdout)]
    assert shown == [
        ("ingest nmap-xml", "ok", ""),
        ("ingest pcap", "interrupted", "interrupted: the process was told to exit"),
    ]
    assert _hosts_up(db) == {"10.0.0.0", "10.0.0.1", "10.0.0.2"}


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is pid, by pid, with their command names."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.rpartition(")")
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name.partition("(")[2]
    return found


def _is_running(pid: int) -> bool:
    """Whether pid names a live process (not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_to_a_scan_stops_the_nmap_it_started(
    tmp_path: Path, listeners: Callable[[str, int], Listener]
) -> None:
    listeners("127.0.82.1", 2525)
    config = tmp_path / "rolecall.toml"
    # A rate limit keeps nmap busy on the /27 for half a minute.
    config.write_text('[scan]\nports = "1-59,2525"\nmax_rate = 60\nresolve_names = false\n')
    db = tmp_path / "inventory.db"
    proc = start(
        "--config", str(config), "--db", str(db), "scan", "subnet", "127.0.82.0/27",
        "--probes", "none", cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not (nmaps := [p for p, n in _children(proc.pid).items() if n == "nmap"]):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "rolecall never started nmap"
        time.sleep(0.05)
    # nmap has a process group of its own: a signal to rolecall's group would miss it.
    assert os.getpgid(nmaps[0]) != os.getpgid(proc.pid)
    seconds, err = send(proc, SIGTERM, whole_group=True)

    assert seconds < STOP_SECONDS
    assert proc.returncode == 143
    assert err.splitlines()[-1] == "rolecall: terminated"
    assert not _is_running(nmaps[0])


def test_a_signal_while_the_inventory_is_created_waits_for_its_schema(tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"

    def create() -> Store:
        """Be told to stop just before the schema is written, then write it."""
        os.kill(os.getpid(), signal.SIGTERM)
        return Store.open(str(db))

    # SIGTERM handled as the command line handles it outside a run.
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(SystemExit) as stopped:
            uninterrupted(create)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == TERMINATED_STATUS
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "run", "observation"} <= tables
    store = Store.open(str(db))
    try:
        with store.run("ingest nmap-xml", "after") as run:
            assert run.id == 1
    finally:
        store.close()
