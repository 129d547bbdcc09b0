"""APScheduler job rows of releases up to 0.1.0, read as plain data without running any code.

Those releases kept schedules as APScheduler 3 pickles in `apscheduler_jobs`. Migration
0004 turns each row into a `schedule` row. The pickles are read by an unpickler that builds
only the trigger and datetime classes a schedule holds, so a planted row that would call a
function (os.system, say) is refused before anything runs. A refused row is logged as a
warning and kept in `apscheduler_jobs`; converted rows are deleted there, and the table is
dropped once it is empty, so no pickle is left for anything to load.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection

from rolecall.inventory.sql.column_types import UTCDateTime

LEGACY_TABLE = "apscheduler_jobs"
LOGGER_NAME = "rolecall.inventory.migrations"

# Each job function a pickle may name, by its reference (0.1.0 put the jobs in
# orchestrator.jobs; the restructured code in rolecall.orchestrator.daemon.jobs): the
# schedule's kind and the names of the function's arguments after the schedule id.
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "orchestrator.jobs:scan": ("scan", ("subnets", "ports", "probes")),
    "orchestrator.jobs:watch_ingest": ("ingest", ("watch",)),
    "orchestrator.jobs:report_email": ("report-email", ("to",)),
    "rolecall.orchestrator.daemon.jobs:scan": ("scan", ("subnets", "ports", "probes")),
    "rolecall.orchestrator.daemon.jobs:watch_ingest": ("ingest", ("watch",)),
    "rolecall.orchestrator.daemon.jobs:report_email": ("report-email", ("to",)),
}

# Every class a stored job may name: the UTC cron and interval triggers, what a five-field
# crontab builds inside a cron trigger, and the datetime values. Nothing else is built.
ALLOWED_CLASSES = frozenset(
    {
        ("apscheduler.triggers.cron", "CronTrigger"),
        ("apscheduler.triggers.cron.fields", "BaseField"),
        ("apscheduler.triggers.cron.fields", "MonthField"),
        ("apscheduler.triggers.cron.fields", "DayOfMonthField"),
        ("apscheduler.triggers.cron.fields", "WeekField"),
        ("apscheduler.triggers.cron.fields", "DayOfWeekField"),
        ("apscheduler.triggers.cron.expressions", "AllExpression"),
        ("apscheduler.triggers.cron.expressions", "RangeExpression"),
        ("apscheduler.triggers.cron.expressions", "MonthRangeExpression"),
        ("apscheduler.triggers.cron.expressions", "WeekdayRangeExpression"),
        ("apscheduler.triggers.cron.expressions", "LastDayOfMonthExpression"),
        ("apscheduler.triggers.interval", "IntervalTrigger"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
    }
)
CRONTAB_FIELDS = ("minute", "hour", "day", "month", "day_of_week")

SCHEDULE = sa.table(
    "schedule",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("arguments", sa.Text()),
    sa.column("cron", sa.String()),
    sa.column("every", sa.Integer()),
    sa.column("origin", sa.String()),
    sa.column("created", UTCDateTime()),
    sa.column("next_run", UTCDateTime()),
)


class _NotConvertibleError(Exception):
    """A stored job that is not a schedule this release can keep; the message says why."""


class _RefusedError(pickle.UnpicklingError):
    """A pickle names something no schedule holds."""


class _ScheduleUnpickler(pickle.Unpickler):
    """Builds only ALLOWED_CLASSES; naming any other class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed class module.name; UnpicklingError for anything else."""
        if (module, name) not in ALLOWED_CLASSES:
            raise _RefusedError(f"it names {module}.{name}, which no schedule holds")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent references (a schedule has none)."""
        raise _RefusedError("it holds a persistent reference")


@dataclass(frozen=True)
class _When:
    """A schedule's trigger as plain data: a crontab or every N seconds."""

    cron: str = ""
    every: int = 0


def _is_utc(zone: Any) -> bool:
    """Whether zone is UTC (the only time zone the releases used)."""
    return isinstance(zone, timezone) and zone.utcoffset(None) == timedelta(0)


def _cron(trigger: CronTrigger) -> _When:
    """The five-field crontab a cron trigger was made from; refused if it has no such form."""
    fields = {field.name: str(field) for field in trigger.fields}
    crontab = " ".join(fields[name] for name in CRONTAB_FIELDS)
    try:
        again = CronTrigger.from_crontab(crontab, timezone=UTC)
    except ValueError as exc:
        raise _NotConvertibleError(
            f"its cron fields {crontab!r} are not a crontab: {exc}"
        ) from None
    if [str(field) for field in again.fields] != [str(field) for field in trigger.fields]:
        raise _NotConvertibleError(f"its cron trigger {trigger} is not a five-field crontab")
    return _When(cron=crontab)


def _interval(trigger: IntervalTrigger) -> _When:
    """The whole seconds of an interval trigger; refused if it has another form."""
    interval = trigger.interval
    if not isinstance(interval, timedelta):
        raise _NotConvertibleError(f"its interval {interval!r} is not a duration")
    seconds = int(interval.total_seconds())
    if seconds < 1 or interval != timedelta(seconds=seconds):
        raise _NotConvertibleError(f"its interval {interval} is not a whole number of seconds")
    return _When(every=seconds)


def _when(trigger: Any) -> _When:
    """The plain form of a stored trigger; refused unless it is one the releases made."""
    if not isinstance(trigger, CronTrigger | IntervalTrigger):
        raise _NotConvertibleError(f"its trigger {type(trigger).__name__} is not cron or interval")
    if not _is_utc(trigger.timezone) or trigger.end_date is not None or trigger.jitter:
        raise _NotConvertibleError(f"its trigger {trigger} is not plain UTC without end or jitter")
    if isinstance(trigger, CronTrigger):
        if trigger.start_date is not None:
            raise _NotConvertibleError(f"its trigger {trigger} has a start date")
        return _cron(trigger)
    return _interval(trigger)


def _plain(value: Any) -> bool:
    """Whether value is an argument a job takes: None, a string or a list of strings."""
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, str)


def _arguments(job_id: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kind and named arguments of a stored job; refused for an unknown function."""
    func = state.get("func")
    if not isinstance(func, str) or func not in FUNCTIONS:
        raise _NotConvertibleError(f"its function {func!r} is not a rolecall job")
    kind, names = FUNCTIONS[func]
    args = state.get("args")
    if (
        not isinstance(args, tuple | list)
        or len(args) != 1 + len(names)
        or args[0] != job_id
        or state.get("kwargs")
        or not all(_plain(value) for value in args[1:])
    ):
        raise _NotConvertibleError(f"its arguments {args!r} do not fit a {kind} job")
    return kind, dict(zip(names, args[1:], strict=True))


def _read(job_state: Any) -> dict[str, Any]:
    """The job's state dict, built by the restricted unpickler."""
    if not isinstance(job_state, bytes | bytearray | memoryview):
        raise _NotConvertibleError("it holds no pickled state")
    try:
        state = _ScheduleUnpickler(io.BytesIO(job_state)).load()
    except _RefusedError as exc:
        raise _NotConvertibleError(f"its pickle is refused: {exc}") from None
    except Exception as exc:  # a damaged pickle fails in many ways; none of them runs code
        raise _NotConvertibleError(f"its pickle cannot be read: {exc!r}") from None
    if not isinstance(state, dict):
        raise _NotConvertibleError("its pickle is not a job's state")
    return state


def schedule_row(job_id: str, job_state: Any, now: datetime) -> dict[str, Any]:
    """The `schedule` row of one stored job; _NotConvertibleError says why there is none."""
    state = _read(job_state)
    if state.get("id") != job_id:
        raise _NotConvertibleError(f"its pickle is for job {state.get('id')!r}")
    kind, arguments = _arguments(job_id, state)
    try:
        when = _when(state.get("trigger"))
    except _NotConvertibleError:
        raise
    except Exception as exc:  # a trigger built from odd state breaks in odd ways
        raise _NotConvertibleError(f"its trigger cannot be read: {exc!r}") from None
    next_run = state.get("next_run_time")
    if next_run is not None and (not isinstance(next_run, datetime) or next_run.tzinfo is None):
        raise _NotConvertibleError(f"its next run time {next_run!r} is not a UTC time")
    return {
        "id": job_id,
        "kind": kind,
        "arguments": json.dumps(arguments, sort_keys=True),
        "cron": when.cron,
        "every": when.every,
        "origin": "config" if job_id.startswith("config:") else "cli",
        "created": now,
        "next_run": next_run,
    }


def convert_legacy_jobs(connection: Connection) -> int:
    """Move each convertible row of apscheduler_jobs into schedule; return how many are left.

    Each row left is logged as a warning saying why it was not converted.
    """
    legacy = sa.table(LEGACY_TABLE, sa.column("id", sa.String()), sa.column("job_state"))
    stored = connection.execute(sa.select(legacy.c.id, legacy.c.job_state)).all()
    now = datetime.now(UTC)
    logger = logging.getLogger(LOGGER_NAME)
    left = 0
    for job_id, job_state in stored:
        try:
            row = schedule_row(str(job_id), job_state, now)
        except _NotConvertibleError as exc:
            left += 1
            logger.warning(
                "schedule %s was not converted (%s); its row is kept in %s",
                job_id,
                exc,
                LEGACY_TABLE,
            )
            continue
        connection.execute(SCHEDULE.insert().values(row))
        connection.execute(sa.delete(legacy).where(legacy.c.id == job_id))
    return left
