"""Migration 0004: schedules saved by release 0.1.0 as APScheduler pickles survive as plain data."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rolecall.inventory.store import Store
from tests.cli_helpers import run_cli
from tests.data_paths import RELEASE_0_1_0_DB

LISTED = [
    "id\tjob\twhen\targuments\tnext run\tsource",
    "nightly-scan\tscan\tcron 0 2 * * *\t127.0.122.0/29 127.0.122.16/29 ports 25,1080"
    " probes smtp,socks\t2026-12-03T02:00:00.000000Z\tcli",
    "sensor-drop\tingest\tevery 300s\twatch /tmp/rc-fixture/drop\t2026-12-02T20:01:35.799709Z\tcli",
    "weekly-report\treport-email\tcron 0 7 * * mon\tto soc@lab.example"
    "\t2026-12-07T07:00:00.000000Z\tcli",
]


def _release_db(tmp_path: Path) -> Path:
    """A copy of the inventory release 0.1.0 left, with its four pickled schedules."""
    path = tmp_path / "inventory.db"
    shutil.copyfile(RELEASE_0_1_0_DB, path)
    return path


def _tables(path: Path) -> set[str]:
    """The names of the tables in an SQLite database."""
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _add_job_row(path: Path, job_id: str, state: Any) -> None:
    """Store a job row as APScheduler 3's SQLAlchemy job store does: its state, pickled."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (?, ?, ?)",
            (job_id, 0.0, state if isinstance(state, bytes) else pickle.dumps(state, 5)),
        )


def _job_state(job_id: str, func: str, trigger: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    """A job's state dict, as APScheduler 3 pickles it."""
    return {
        "version": 1,
        "id": job_id,
        "func": func,
        "trigger": trigger,
        "executor": "default",
        "args": args,
        "kwargs": {},
        "name": "report-email",
        "misfire_grace_time": 604800,
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": datetime(2027, 1, 1, 7, tzinfo=UTC),
    }


class _RunsACommand:
    """Pickles as a call of os.system: what a planted row would make the old daemon do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def test_schedules_saved_by_release_0_1_0_survive_the_upgrade(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = _release_db(tmp_path)
    listed = run_cli(capsys, "--db", str(db_path), "schedule", "list")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == LISTED
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "all converted"
    assert "apscheduler_jobs" not in _tables(db_path), "no pickle is left behind"

    store = Store.open(str(db_path))
    stored = {schedule.id: schedule for schedule in store.schedules.all()}
    store.close()
    assert {key: (s.kind, s.origin) for key, s in stored.items()} == {
        "nightly-scan": ("scan", "cli"),
        "sensor-drop": ("ingest", "cli"),
        "weekly-report": ("report-email", "cli"),
        "config:weekday-report": ("report-email", "config"),
    }
    assert dict(stored["nightly-scan"].arguments) == {
        "subnets": ["127.0.122.0/29", "127.0.122.16/29"],
        "ports": "25,1080",
        "probes": ["smtp", "socks"],
    }
    assert (stored["sensor-drop"].cron, stored["sensor-drop"].every) == ("", 300)
    weekday = stored["config:weekday-report"]
    assert (weekday.cron, dict(weekday.arguments)) == ("30 6 * * 1-5", {"to": []})
    assert weekday.next_run == datetime(2026, 12, 3, 6, 30, tzinfo=UTC)

    # The converted schedules are ordinary ones: removed, replaced and listed as any other.
    config = tmp_path / "rolecall.toml"
    config.write_text(
        '[[schedule]]\nid = "weekday-report"\njob = "report-email"\ncron = "30 6 * * 1-5"\n'
    )
    db = ("--config", str(config), "--db", str(db_path))
    assert run_cli(capsys, *db, "schedule", "remove", "sensor-drop").code == 0
    again = run_cli(capsys, *db, "schedule", "list").out.splitlines()
    assert again[1].startswith("config:weekday-report\treport-email\tcron 30 6 * * 1-5\t")
    assert again[2:] == [LISTED[1], LISTED[3]]


def test_a_planted_pickle_is_refused_unrun_and_kept_with_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = _release_db(tmp_path)
    ran = tmp_path / "the-payload-ran"
    weekly = CronTrigger.from_crontab("0 7 * * MON", timezone=UTC)
    planted = _job_state(
        "planted", "orchestrator.jobs:report_email", _RunsACommand(f"touch {ran}"), ("planted", [])
    )
    _add_job_row(db_path, "planted", planted)
    _add_job_row(db_path, "elsewhere", _job_state("elsewhere", "os:system", weekly, ("ls",)))
    _add_job_row(db_path, "damaged", b"\x80\x05not a pickle")

    listed = run_cli(capsys, "--db", str(db_path), "schedule", "list")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == LISTED, "the release's own schedules still convert"
    assert not ran.exists(), "the planted pickle ran"

    warnings = {r.getMessage().split()[1]: r.getMessage() for r in caplog.records}
    assert set(warnings) == {"planted", "elsewhere", "damaged"}
    assert "it names posix.system, which no schedule holds" in warnings["planted"]
    assert "its function 'os:system' is not a rolecall job" in warnings["elsewhere"]
    assert "its pickle cannot be read" in warnings["damaged"]
    assert all("its row is kept in apscheduler_jobs" in text for text in warnings.values())
    with sqlite3.connect(db_path) as conn:
        kept = {row[0] for row in conn.execute("SELECT id FROM apscheduler_jobs")}
    assert kept == {"planted", "elsewhere", "damaged"}, "only the refused rows are left"


def test_every_crontab_and_interval_converts_and_odd_triggers_are_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = _release_db(tmp_path)
    func = "rolecall.orchestrator.daemon.jobs:report_email"
    crontab = "*/15 1-5 last jan-mar mon-fri"
    ranges = CronTrigger.from_crontab(crontab, timezone=UTC)
    _add_job_row(db_path, "ranges", _job_state("ranges", func, ranges, ("ranges", ["a@b.c"])))
    seconds = CronTrigger(second="*/10", timezone=UTC)
    _add_job_row(db_path, "seconds", _job_state("seconds", func, seconds, ("seconds", [])))
    half = IntervalTrigger(seconds=1.5, timezone=UTC)
    _add_job_row(db_path, "half", _job_state("half", func, half, ("half", [])))

    listed = run_cli(capsys, "--db", str(db_path), "schedule", "list")
    assert listed.code == 0, listed.err
    assert f"ranges\treport-email\tcron {crontab}\tto a@b.c\t2027-01-01T07:00:00.000000Z\tcli" in (
        listed.out
    )
    warnings = {r.getMessage().split()[1]: r.getMessage() for r in caplog.records}
    assert set(warnings) == {"seconds", "half"}
    assert "is not a five-field crontab" in warnings["seconds"]
    assert "is not a whole number of seconds" in warnings["half"]
