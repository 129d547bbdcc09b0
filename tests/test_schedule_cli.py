"""`rolecall schedule add|list|remove`: the schedule table in the inventory and the config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, DaemonConfig, ScheduleEntry
from rolecall.orchestrator.daemon.scheduler import ScheduledJobs, make_scheduler
from rolecall.orchestrator.daemon.schedules import sync_config
from tests.cli_helpers import run_cli
from tests.inventory_sql import execute


def _config(tmp_path: Path, body: str) -> Path:
    """Write a config file and return its path."""
    path = tmp_path / "rolecall.toml"
    path.write_text(body, encoding="utf-8")
    return path


WEEKLY = """
[[schedule]]
id = "weekly"
job = "report-email"
cron = "0 7 * * MON"
to = ["soc@lab.example"]
"""


def test_add_list_remove_round_trip(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    db = ("--db", database)
    scan = run_cli(
        capsys, *db, "schedule", "add", "scan", "--subnet", "127.0.122.0/29",
        "--subnet", "127.0.122.16/29,127.0.122.32", "--cron", "0 2 * * *", "--id", "nightly",
    )  # fmt: skip
    assert scan.code == 0, scan.err
    assert "added schedule nightly: scan, next run" in scan.out
    ingest = run_cli(capsys, *db, "schedule", "add", "ingest", "--watch", str(drop))
    assert ingest.code == 0, ingest.err
    report = run_cli(capsys, *db, "schedule", "add", "report-email", "--id", "mail")
    assert report.code == 0, report.err

    listed = run_cli(capsys, *db, "schedule", "list")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0] == "id\tjob\twhen\targuments\tnext run\tsource"
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["nightly"][1:4] == [
        "scan",
        "cron 0 2 * * *",
        "127.0.122.0/29 127.0.122.16/29 127.0.122.32/32",
    ]
    assert rows["nightly"][4].endswith("T02:00:00.000000Z")
    assert rows["mail"][1:3] == ["report-email", "cron 0 7 * * mon"]
    (watch_id,) = [key for key in rows if key.startswith("ingest-")]
    assert rows[watch_id][2:4] == ["every 60s", f"watch {drop.resolve()}"]
    assert {row[5] for row in rows.values()} == {"cli"}

    removed = run_cli(capsys, *db, "schedule", "remove", "nightly")
    assert removed.code == 0, removed.err
    again = run_cli(capsys, *db, "schedule", "list")
    assert "nightly" not in again.out
    assert "mail\treport-email" in again.out


def test_schedules_are_stored_as_data_and_run_with_daemon_safe_defaults(database: str) -> None:
    store = Store.open(database)
    entry = ScheduleEntry(id="mail", job="report-email", cron="0 7 * * MON")
    scheduler = make_scheduler(DaemonConfig())
    try:
        sync_config(store, Config(schedule=[entry]))
        stored = store.schedules.get("config:mail")
        assert stored is not None
        assert (stored.kind, dict(stored.arguments), stored.cron, stored.origin) == (
            "report-email",
            {"to": []},
            "0 7 * * MON",
            "config",
        )
        scheduler.start(paused=True)
        ScheduledJobs(scheduler, store, logging.getLogger("test")).sync()
        job = scheduler.get_job("config:mail")
        assert job is not None
        # A weekly report missed by a day still runs, once; never two at a time.
        assert job.misfire_grace_time == 7 * 24 * 3600
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.args == ("config:mail", [])
        assert job.next_run_time == stored.next_run
    finally:
        scheduler.shutdown(wait=False)
        store.close()


def test_config_schedules_are_listed_and_synced_with_the_stored_ones(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, WEEKLY)
    args = ("--config", str(config), "--db", database)
    added = run_cli(
        capsys, *args, "schedule", "add", "scan", "--subnet", "127.0.122.0/29",
        "--every", "3600", "--id", "hourly",
    )  # fmt: skip
    assert added.code == 0, added.err
    listed = run_cli(capsys, *args, "schedule", "list")
    assert "config:weekly\treport-email\tcron 0 7 * * mon\tto soc@lab.example\t" in listed.out
    assert "\tconfig\n" in listed.out
    assert "hourly\tscan\tevery 3600s" in listed.out

    refused = run_cli(capsys, *args, "schedule", "remove", "config:weekly")
    assert refused.code == 2
    assert "declared in the config file" in refused.err

    # What the daemon stores from the config matches what `schedule list` showed, and
    # an entry dropped from the config is dropped from the store on the next sync.
    store = Store.open(database)
    try:
        entry = ScheduleEntry(id="weekly", job="report-email", cron="0 7 * * MON")
        assert sync_config(store, Config(schedule=[entry])) == ["config:weekly"]
        assert {s.id for s in store.schedules.all()} == {"config:weekly", "hourly"}
        assert sync_config(store, Config()) == []
        assert {s.id for s in store.schedules.all()} == {"hourly"}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "--subnet", "127.0.122.0/29", "--cron", "61 * * * *"], "bad cron"),
        (["scan", "--subnet", "not-a-net", "--cron", "0 2 * * *"], "is not an address or CIDR"),
        (["scan", "--subnet", "127.0.122.1", "--id", "x"], "a scan job needs --cron"),
        (["scan", "--subnet", "127.0.122.1", "--cron", "0 2 * * *", "--every", "5"], "not both"),
        (["scan", "--subnet", "127.0.122.1", "--cron", "0 2 * * *", "--id", "a:b"], "id"),
        (["ingest", "--watch", "/nonexistent/drop"], "not a directory"),
        (["scan", "--subnet", "127.0.122.1", "--ports", "0", "--cron", "0 2 * * *"], "ports"),
    ],
)
def test_bad_schedules_are_usage_errors(
    capsys: pytest.CaptureFixture[str], database: str, args: list[str], message: str
) -> None:
    result = run_cli(capsys, "--db", database, "schedule", "add", *args)
    assert result.code == 2, result.err
    assert message in result.err
    assert result.err.count("\n") == 1, "one sentence, no traceback"


def test_duplicate_ids_need_replace(capsys: pytest.CaptureFixture[str], database: str) -> None:
    args = ("--db", database, "schedule", "add", "report-email", "--id", "mail")
    assert run_cli(capsys, *args).code == 0
    twice = run_cli(capsys, *args)
    assert twice.code == 2
    assert "--replace" in twice.err
    replaced = run_cli(capsys, *args, "--cron", "0 8 * * TUE", "--replace")
    assert replaced.code == 0, replaced.err
    listed = run_cli(capsys, "--db", database, "schedule", "list")
    assert "mail\treport-email\tcron 0 8 * * tue" in listed.out
    missing = run_cli(capsys, "--db", database, "schedule", "remove", "nope")
    assert missing.code == 2
    assert "no schedule with id nope" in missing.err


def test_bad_config_schedule_names_the_key(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, '[[schedule]]\nid = "x"\njob = "dance"\n')
    result = run_cli(capsys, "--config", str(config), "--db", database, "schedule", "list")
    assert result.code == 2
    assert "schedule.job" in result.err


def test_a_scheduled_scan_outside_the_scope_is_refused_when_added(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text('[scope]\nallow = ["127.0.122.0/24"]\n', encoding="utf-8")
    args = ("--config", str(config), "--db", database, "schedule", "add", "scan")
    outside = run_cli(capsys, *args, "--subnet", "192.0.2.0/24", "--every", "60")
    assert outside.code == 2
    assert "outside the configured scope" in outside.err
    bad = run_cli(capsys, *args, "--subnet", "not-a-network", "--every", "60")
    assert bad.code == 2
    assert "not an address or CIDR network" in bad.err
    inside = run_cli(capsys, *args, "--subnet", "127.0.122.0/28", "--every", "60")
    assert inside.code == 0, inside.err
    listed = run_cli(capsys, "--db", database, "schedule", "list").out
    assert "127.0.122.0/28" in listed
    assert "192.0.2.0" not in listed


def test_a_stored_schedule_that_is_not_valid_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    db = ("--db", database)
    assert run_cli(capsys, *db, "schedule", "add", "report-email", "--id", "mail").code == 0
    execute(database, "UPDATE schedule SET kind = 'dance'")
    listed = run_cli(capsys, *db, "schedule", "list")
    assert listed.code == 2
    assert listed.err == "rolecall: schedule mail: 'dance' is not a kind of job\n"
    execute(database, "UPDATE schedule SET kind = 'scan'")
    listed = run_cli(capsys, *db, "schedule", "list")
    assert listed.code == 2
    assert "schedule mail: a scan job takes subnets, ports, probes" in listed.err
