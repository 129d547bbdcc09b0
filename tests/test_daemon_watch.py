"""Watched drop directories: new captures and Zeek logs ingested once, then set aside."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, DaemonConfig
from rolecall.orchestrator.daemon import jobs
from rolecall.orchestrator.daemon.watch import kind_of, ready_files
from rolecall.orchestrator.demo.capture import replay_recorded
from rolecall.orchestrator.errors import RunError
from tests.zeek_helpers import write_json

SMTP_ROW = {
    "ts": 1_700_000_000.0,
    "uid": "Cdemo1",
    "id.orig_h": "127.0.122.50",
    "id.orig_p": 40000,
    "id.resp_h": "127.0.122.20",
    "id.resp_p": 25,
    "trans_depth": 1,
    "helo": "pc.lab.example",
    "mailfrom": "a@lab.example",
    "rcptto": ["b@example.org"],
    "user_agent": "The Bat! (v3.0)",
}


def _age(path: Path, seconds: float = 60.0) -> None:
    """Make a file look untouched for a while."""
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """A drop directory with a capture, a Zeek log, a damaged capture and a stray note."""
    folder = tmp_path / "drop"
    folder.mkdir()
    replay_recorded(folder / "lab.pcap", "127.0.122.0/26")
    write_json(folder / "smtp.log", [SMTP_ROW])
    (folder / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    (folder / "notes.txt").write_text("not evidence\n")
    for path in folder.iterdir():
        _age(path)
    return folder


@pytest.fixture
def context(tmp_path: Path) -> Iterator[jobs.JobContext]:
    """A daemon context bound for the test (settle time 5 s)."""
    store = Store.open(str(tmp_path / "inventory.db"))
    config = Config(daemon=DaemonConfig(watch_settle=5.0))
    bound = jobs.JobContext(store, config, logging.getLogger("rolecall.daemon"))
    jobs.bind(bound)
    yield bound
    jobs.bind(None)
    store.close()


def _runs(store: Store) -> list[tuple[str, str, str]]:
    """(kind, status, error) of every run."""
    with store.read("read rows") as connection:
        rows = connection.execute(text("SELECT kind, status, error FROM run ORDER BY id"))
        return [(str(kind), str(status), str(error)) for kind, status, error in rows]


def test_files_are_recognised_by_content_and_name(drop: Path) -> None:
    assert kind_of(drop / "lab.pcap") == "pcap"
    assert kind_of(drop / "smtp.log") == "zeek"
    assert kind_of(drop / "notes.txt") is None
    fresh = drop / "conn.log"
    fresh.write_text("#separator \\x09\n")
    found = ready_files(drop, settle=5.0)
    assert {path.name: kind for kind, path in found} == {
        "lab.pcap": "pcap",
        "smtp.log": "zeek",
        "broken.pcap": "pcap",
    }
    assert fresh not in [path for _, path in found], "a file still being written must wait"


def test_a_hidden_file_waits_until_it_is_renamed(drop: Path) -> None:
    hidden = drop / ".late.pcap"
    replay_recorded(hidden, "127.0.122.64/26")
    _age(hidden)
    assert hidden not in [path for _, path in ready_files(drop, settle=0.0)]
    shown = hidden.rename(drop / "late.pcap")
    assert ("pcap", shown) in ready_files(drop, settle=0.0)


def test_watch_ingests_each_new_file_once_and_sets_it_aside(
    drop: Path, context: jobs.JobContext
) -> None:
    jobs.watch_ingest("drop", str(drop))

    assert sorted(p.name for p in (drop / "done").iterdir()) == ["lab.pcap", "smtp.log"]
    assert [p.name for p in (drop / "failed").iterdir()] == ["broken.pcap"]
    assert (drop / "notes.txt").exists(), "files that are not evidence stay where they are"
    runs = _runs(context.store)
    assert ("scheduled ingest", "ok", "") in runs
    assert ("ingest pcap", "ok", "") in runs
    assert any(kind == "ingest zeek" and status == "ok" for kind, status, _ in runs)
    assert any(kind == "ingest pcap" and status == "failed" for kind, status, _ in runs)
    with context.store.read("read rows") as connection:
        mails = connection.execute(text("SELECT count(*) FROM smtp")).scalar_one()
    assert mails > 0

    # Nothing new: the next look records no run; the same capture dropped again is not re-read.
    before = len(runs)
    jobs.watch_ingest("drop", str(drop))
    assert len(_runs(context.store)) == before
    shutil.copy(drop / "done" / "lab.pcap", drop / "again.pcap")
    _age(drop / "again.pcap")
    jobs.watch_ingest("drop", str(drop))
    assert (drop / "done" / "again.pcap").exists()
    with context.store.read("read rows") as connection:
        assert connection.execute(text("SELECT count(*) FROM smtp")).scalar_one() == mails


def test_a_missing_watch_directory_is_a_failed_run_not_a_crash(
    tmp_path: Path, context: jobs.JobContext
) -> None:
    jobs.watch_ingest("gone", str(tmp_path / "gone"))
    kind, status, error = _runs(context.store)[-1]
    assert (kind, status) == ("scheduled ingest", "failed")
    assert "does not exist" in error


def test_jobs_outside_the_daemon_say_so() -> None:
    jobs.bind(None)
    with pytest.raises(RunError, match="only inside `rolecall run`"):
        jobs.scan("x", ["127.0.122.1"], None, None)
