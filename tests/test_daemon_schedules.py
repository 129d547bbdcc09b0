"""`rolecall run` and the schedule table: late runs on start, changes picked up while running."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.daemon_helpers import daemon, event_named, rolecall, smtp_receiver
from tests.inventory_sql import execute, query

RECEIVER = "127.0.122.122"


def _config(tmp_path: Path, port: int, database: str) -> Path:
    """A config: the inventory, a JSON log file, the receiver as relay; no [[schedule]]."""
    path = tmp_path / "rolecall.toml"
    path.write_text(
        f"""
[database]
url = "{database}"

[daemon]
log_file = "{tmp_path / "daemon.log"}"

[email]
host = "{RECEIVER}"
port = {port}
tls = "none"
to = ["soc@lab.example"]
keep_dir = "{tmp_path / "reports"}"
""",
        encoding="utf-8",
    )
    return path


def _next_run(database: str, schedule_id: str) -> datetime:
    """The next run the schedule table holds for a schedule."""
    ((when,),) = query(database, "SELECT next_run FROM schedule WHERE id = :id", id=schedule_id)
    if isinstance(when, datetime):
        return when
    return datetime.fromisoformat(when).replace(tzinfo=UTC)


def test_a_missed_run_happens_on_start_and_table_changes_reach_the_running_daemon(
    tmp_path: Path, database: str
) -> None:
    with smtp_receiver(RECEIVER) as (port, inbox):
        base = ("--config", str(_config(tmp_path, port, database)))
        added = rolecall(
            *base, "schedule", "add", "report-email", "--every", "3600", "--id", "hourly",
            cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        # As if the daemon had been down when the run was due, an hour ago.
        due = datetime.now(UTC) - timedelta(hours=1)
        execute(database, "UPDATE schedule SET next_run = :due", due=due)
        # A row written past the command line names no job rolecall has: it is refused.
        execute(
            database,
            "INSERT INTO schedule (id, kind, arguments, cron, every, origin, created)"
            " VALUES ('odd', 'os.system', '{}', '', 1, 'cli', :created)",
            created=datetime(2026, 12, 1, tzinfo=UTC),
        )

        with daemon(*base, cwd=tmp_path, log=tmp_path / "daemon.log") as running:
            running.wait_for(event_named("job-ok", job="hourly"))
            refused = running.wait_for(event_named("schedule-refused", job="odd"))
            assert refused["error"] == "schedule odd: 'os.system' is not a kind of job"
            deadline = time.monotonic() + 10
            while _next_run(database, "hourly") <= datetime.now(UTC):
                assert time.monotonic() < deadline, "the next run was never written back"
                time.sleep(0.1)
            assert _next_run(database, "hourly") > due + timedelta(hours=1)

            added = rolecall(
                *base, "schedule", "add", "report-email", "--every", "1", "--id", "often",
                cwd=tmp_path,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
            running.wait_for(event_named("job-ok", job="often"))

            removed = rolecall(*base, "schedule", "remove", "often", cwd=tmp_path)
            assert removed.returncode == 0, removed.stderr
            running.wait_for(event_named("schedules-synced", removed=["often"]))
            time.sleep(0.5)  # a run started just before the removal ends
            starts = len([e for e in running.events() if event_named("job-start", job="often")(e)])
            time.sleep(2.5)
            later = len([e for e in running.events() if event_named("job-start", job="often")(e)])
            assert later == starts, "a removed schedule still runs"
            assert running.stop() == 0
    assert len(inbox.messages) >= 2
