"""Schedules: APScheduler 3 with its job table in the inventory database, from CLI and config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from rolecall.orchestrator.config import Config, DaemonConfig, ScheduleEntry
from rolecall.orchestrator.daemon import jobs
from rolecall.orchestrator.errors import UsageError

JOB_TABLE = "apscheduler_jobs"
CONFIG_PREFIX = "config:"
DEFAULT_WATCH_EVERY = 60
FUNCTIONS = {"scan": jobs.scan, "ingest": jobs.watch_ingest, "report-email": jobs.report_email}


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as `schedule list` shows it."""

    id: str
    job: str
    when: str
    arguments: str
    next_run: datetime | None
    source: str


def make_scheduler(engine: Engine, daemon: DaemonConfig, workers: int = 4) -> BackgroundScheduler:
    """A scheduler keeping jobs in the inventory; one run per job at a time, misses coalesced."""
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)},
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            # APScheduler's default of 1 s would silently drop a weekly report the
            # daemon was down for; a late run is still wanted within this window.
            "misfire_grace_time": daemon.misfire_grace_time,
        },
        timezone=UTC,
    )


@contextmanager
def paused_scheduler(engine: Engine, daemon: DaemonConfig) -> Iterator[BackgroundScheduler]:
    """A scheduler that runs nothing, for editing the stored schedules from the CLI."""
    scheduler = make_scheduler(engine, daemon)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def trigger_for(entry: ScheduleEntry) -> BaseTrigger:
    """The entry's trigger: its cron expression (UTC), or every N seconds; UsageError if neither."""
    if entry.cron and entry.every:
        raise UsageError(f"schedule {entry.id}: give a cron expression or an interval, not both")
    if entry.cron:
        try:
            return CronTrigger.from_crontab(entry.cron, timezone=UTC)
        except ValueError as exc:
            raise UsageError(f"schedule {entry.id}: bad cron {entry.cron!r}: {exc}") from None
    if entry.every:
        return IntervalTrigger(seconds=entry.every, timezone=UTC)
    if entry.job == "ingest":
        return IntervalTrigger(seconds=DEFAULT_WATCH_EVERY, timezone=UTC)
    raise UsageError(f"schedule {entry.id}: a {entry.job} job needs --cron")


def job_arguments(entry: ScheduleEntry) -> list[Any]:
    """The plain arguments of the entry's job function; UsageError if one is missing."""
    if entry.job == "scan":
        if not entry.subnets:
            raise UsageError(f"schedule {entry.id}: a scan job needs at least one subnet")
        return [entry.id, list(entry.subnets), entry.ports, entry.probes]
    if entry.job == "ingest":
        if not entry.watch:
            raise UsageError(f"schedule {entry.id}: an ingest job needs a directory to watch")
        return [entry.id, entry.watch]
    return [entry.id, list(entry.to)]


def describe_trigger(trigger: BaseTrigger) -> str:
    """A short human form of a trigger: "cron 0 2 * * *" or "every 60s"."""
    if isinstance(trigger, IntervalTrigger):
        return f"every {int(trigger.interval.total_seconds())}s"
    if isinstance(trigger, CronTrigger):
        fields = {f.name: str(f) for f in trigger.fields}
        order = ("minute", "hour", "day", "month", "day_of_week")
        return "cron " + " ".join(fields[name] for name in order)
    return str(trigger)


def describe_arguments(job: str, arguments: list[Any]) -> str:
    """A short human form of a job's arguments."""
    if job == "scan":
        text = " ".join(arguments[1])
        if arguments[2]:
            text += f" ports {arguments[2]}"
        if arguments[3] is not None:
            text += f" probes {','.join(arguments[3]) or 'none'}"
        return text
    if job == "ingest":
        return f"watch {arguments[1]}"
    return "to " + (", ".join(arguments[1]) or "[email] to")


def add_schedule(
    scheduler: BackgroundScheduler, entry: ScheduleEntry, job_id: str, replace: bool = False
) -> None:
    """Store (or replace) the schedule of an entry under job_id."""
    trigger = trigger_for(entry)
    arguments = [job_id, *job_arguments(entry)[1:]]
    scheduler.add_job(
        FUNCTIONS[entry.job],
        trigger,
        args=arguments,
        id=job_id,
        name=entry.job,
        replace_existing=replace,
    )


def _job_name(function: Any) -> str:
    """The schedule's job name for a stored job function."""
    for name, known in FUNCTIONS.items():
        if function is known:
            return name
    return getattr(function, "__name__", str(function))


def sync_config(scheduler: BackgroundScheduler, config: Config) -> list[str]:
    """Make the stored config: schedules equal the config's [[schedule]] entries; return ids."""
    wanted = {CONFIG_PREFIX + entry.id: entry for entry in config.schedule}
    if len(wanted) != len(config.schedule):
        raise UsageError("config: two [[schedule]] entries share an id")
    for entry in wanted.values():
        trigger_for(entry)
        job_arguments(entry)
    for job in scheduler.get_jobs():
        if job.id.startswith(CONFIG_PREFIX) and job.id not in wanted:
            scheduler.remove_job(job.id)
    for job_id, entry in wanted.items():
        add_schedule(scheduler, entry, job_id, replace=True)
    return sorted(wanted)


def list_schedules(scheduler: BackgroundScheduler, config: Config) -> list[ScheduleInfo]:
    """Every schedule: those stored from the CLI and those the config declares, by id."""
    found: dict[str, ScheduleInfo] = {}
    for job in scheduler.get_jobs():
        if job.id.startswith(CONFIG_PREFIX):
            continue
        name = _job_name(job.func)
        found[job.id] = ScheduleInfo(
            job.id,
            name,
            describe_trigger(job.trigger),
            describe_arguments(name, list(job.args)),
            job.next_run_time,
            "cli",
        )
    now = datetime.now(UTC)
    for entry in config.schedule:
        trigger = trigger_for(entry)
        found[CONFIG_PREFIX + entry.id] = ScheduleInfo(
            CONFIG_PREFIX + entry.id,
            entry.job,
            describe_trigger(trigger),
            describe_arguments(entry.job, job_arguments(entry)),
            trigger.get_next_fire_time(None, now),
            "config",
        )
    return sorted(found.values(), key=lambda info: info.id)


def remove_schedule(scheduler: BackgroundScheduler, job_id: str) -> None:
    """Remove a CLI-added schedule; UsageError for an unknown or config-declared one."""
    if job_id.startswith(CONFIG_PREFIX):
        raise UsageError(f"schedule {job_id} is declared in the config file: remove it there")
    try:
        scheduler.remove_job(job_id)
    except JobLookupError:
        raise UsageError(f"no schedule with id {job_id} (see `rolecall schedule list`)") from None
