"""Schedules from the command line and the config: checked, kept in the inventory, listed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rolecall.inventory.schedules import Schedule
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import (
    MAX_IPV6_SWEEP,
    Config,
    ScheduleEntry,
    ScopeConfig,
    config_error,
    schedule_entry,
)
from rolecall.orchestrator.daemon.kinds import KINDS, JobKind
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.scope import Scope, parse_target
from rolecall.probes.gate import OutOfScopeError

CONFIG_PREFIX = "config:"


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as `schedule list` shows it."""

    id: str
    job: str
    when: str
    arguments: str
    next_run: datetime | None
    source: str
    schedule: Schedule
    """What is stored: the cron text or interval, and the arguments with their types."""


@dataclass(frozen=True)
class JobParts:
    """What the daemon builds an APScheduler job from: the kind, its trigger, its arguments."""

    kind: JobKind
    trigger: BaseTrigger
    args: list[Any]


def _crontab(expression: str, label: str) -> CronTrigger:
    """The UTC trigger of a five-field crontab; UsageError naming the schedule if it is bad."""
    try:
        return CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        raise UsageError(f"schedule {label}: bad cron {expression!r}: {exc}") from None


def trigger_of(schedule: Schedule) -> BaseTrigger:
    """The schedule's trigger: its crontab (UTC), or every N seconds."""
    if schedule.cron:
        return _crontab(schedule.cron, schedule.id)
    if schedule.every > 0:
        return IntervalTrigger(seconds=schedule.every, timezone=UTC)
    raise UsageError(f"schedule {schedule.id}: it has neither a crontab nor an interval")


def schedule_of(entry: ScheduleEntry, origin: str = "cli") -> Schedule:
    """The stored form of an entry (a config one as config:ID); UsageError if it is not valid."""
    kind = KINDS[entry.job]
    if entry.cron and entry.every:
        raise UsageError(f"schedule {entry.id}: give a cron expression or an interval, not both")
    if entry.cron:
        _crontab(entry.cron, entry.id)
    every = entry.every or (0 if entry.cron else kind.default_every)
    if not entry.cron and not every:
        raise UsageError(f"schedule {entry.id}: a {entry.job} job needs --cron")
    if entry.sensor and entry.job != "ingest":
        # A sensor's daemon only watches its folders: a scan for a site goes to its workers.
        raise UsageError(f"schedule {entry.id}: only an ingest job runs on a sensor")
    schedule_id = CONFIG_PREFIX + entry.id if origin == "config" else entry.id
    arguments = kind.arguments(entry)
    return Schedule(
        schedule_id, entry.job, arguments, entry.cron, every, origin, sensor=entry.sensor
    )


def entry_of(schedule: Schedule) -> ScheduleEntry:
    """The [[schedule]] entry a stored schedule stands for; UsageError if it is not one."""
    kind = KINDS.get(schedule.kind)
    if kind is None:
        raise UsageError(f"schedule {schedule.id}: {schedule.kind!r} is not a kind of job")
    if not kind.takes(set(schedule.arguments)):
        names = ", ".join(kind.parameters)
        raise UsageError(f"schedule {schedule.id}: a {schedule.kind} job takes {names}")
    values = {
        "id": schedule.id.removeprefix(CONFIG_PREFIX),
        "job": schedule.kind,
        "cron": schedule.cron,
        "every": schedule.every,
        "sensor": schedule.sensor,
        **schedule.arguments,
    }
    return schedule_entry(values, f"schedule {schedule.id}: ")


def out_of_scope(
    entry: ScheduleEntry, scope: ScopeConfig, max_ipv6_sweep: int = MAX_IPV6_SWEEP
) -> str:
    """Why a scan entry's subnets are not all inside scope, as `schedule add` says ("" if in).

    An IPv6 subnet wider than max_ipv6_sweep is never swept, so its size is no reason.
    """
    if entry.job != "scan":
        return ""
    targets = [parse_target(subnet) for subnet in entry.subnets]
    try:
        Scope.from_config(scope, targets).plan(targets, scope.max_addresses, max_ipv6_sweep)
    except (OutOfScopeError, UsageError) as exc:
        return str(exc)
    return ""


def job_parts(
    schedule: Schedule, scope: ScopeConfig | None = None, max_ipv6_sweep: int = MAX_IPV6_SWEEP
) -> JobParts:
    """What a stored schedule runs and when, checked as if it were given anew; UsageError.

    With a scope, a scan whose subnets are not wholly inside it is refused too.
    """
    entry = entry_of(schedule)
    if scope is not None and (why := out_of_scope(entry, scope, max_ipv6_sweep)):
        raise UsageError(f"schedule {schedule.id}: {why}")
    checked = schedule_of(entry, schedule.origin)
    kind = KINDS[checked.kind]
    return JobParts(kind, trigger_of(checked), kind.call(schedule.id, checked.arguments))


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The first run of a schedule after now."""
    fire: datetime | None = trigger_of(schedule).get_next_fire_time(None, now)
    return fire


def describe_trigger(trigger: BaseTrigger) -> str:
    """A short human form of a trigger: "cron 0 2 * * *" or "every 60s"."""
    if isinstance(trigger, IntervalTrigger):
        return f"every {int(trigger.interval.total_seconds())}s"
    if isinstance(trigger, CronTrigger):
        fields = {f.name: str(f) for f in trigger.fields}
        order = ("minute", "hour", "day", "month", "day_of_week")
        return "cron " + " ".join(fields[name] for name in order)
    return str(trigger)


def add_schedule(store: Store, entry: ScheduleEntry, replace: bool = False) -> Schedule:
    """Store a schedule given on the command line, with its next run; UsageError if taken."""
    schedule = schedule_of(entry)
    schedule = dataclasses.replace(schedule, next_run=next_run(schedule, datetime.now(UTC)))
    if replace:
        store.schedules.replace(schedule)
    elif not store.schedules.add(schedule):
        raise UsageError(f"a schedule with id {entry.id} exists (use --replace or another --id)")
    return schedule


def sync_config(store: Store, config: Config) -> list[str]:
    """Make the stored config: schedules equal the config's [[schedule]] entries; return ids.

    UsageError naming the file if two share an id or a scan's subnets are outside [scope].
    """
    if len({entry.id for entry in config.schedule}) != len(config.schedule):
        raise config_error(config, "schedule: two [[schedule]] entries share an id")
    now = datetime.now(UTC)
    wanted = []
    for entry in config.schedule:
        if why := out_of_scope(entry, config.scope, config.scan.max_ipv6_sweep):
            raise config_error(config, f"schedule {entry.id}: {why}")
        schedule = schedule_of(entry, "config")
        wanted.append(dataclasses.replace(schedule, next_run=next_run(schedule, now)))
    store.schedules.sync_origin("config", wanted)
    return sorted(schedule.id for schedule in wanted)


def _info(schedule: Schedule, now: datetime) -> ScheduleInfo:
    """How `schedule list` shows a schedule (its next run computed if none is stored)."""
    parts = job_parts(schedule)
    arguments = parts.kind.describe(schedule.arguments)
    if schedule.sensor:
        arguments += f" sensor {schedule.sensor}"
    return ScheduleInfo(
        schedule.id,
        schedule.kind,
        describe_trigger(parts.trigger),
        arguments,
        schedule.next_run or parts.trigger.get_next_fire_time(None, now),
        schedule.origin,
        schedule,
    )


def list_schedules(store: Store, config: Config) -> list[ScheduleInfo]:
    """Every schedule: those stored from the CLI and those the config declares, by id."""
    now = datetime.now(UTC)
    found = [_info(schedule, now) for schedule in store.schedules.all() if schedule.origin == "cli"]
    found += [_info(schedule_of(entry, "config"), now) for entry in config.schedule]
    return sorted(found, key=lambda info: info.id)


def remove_schedule(store: Store, schedule_id: str) -> None:
    """Remove a CLI-added schedule; UsageError for an unknown or config-declared one."""
    if schedule_id.startswith(CONFIG_PREFIX):
        raise UsageError(f"schedule {schedule_id} is declared in the config file: remove it there")
    if not store.schedules.remove(schedule_id, "cli"):
        raise UsageError(f"no schedule with id {schedule_id} (see `rolecall schedule list`)")
