"""The schedule table: what the daemon runs, kept as plain data (kind, JSON arguments, trigger)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from rolecall.inventory.database_errors import database_error
from rolecall.inventory.errors import StoreError
from rolecall.inventory.tables import SCHEDULE_TABLE


@dataclass(frozen=True)
class Schedule:
    """One schedule: which job with which arguments, and when (a crontab or every N seconds)."""

    id: str
    kind: str
    arguments: Mapping[str, Any]
    cron: str = ""
    every: int = 0
    origin: str = "cli"
    created: datetime | None = None
    next_run: datetime | None = None
    # The sensor whose daemon runs it (`rolecall run --sensor NAME`); "" for the central one.
    sensor: str = ""

    def same_job(self, other: Schedule) -> bool:
        """Whether other runs the same job at the same times (created and next run aside)."""
        return replace(self, created=None, next_run=None) == replace(
            other, created=None, next_run=None
        )


def _arguments_text(arguments: Mapping[str, Any]) -> str:
    """The arguments as the table keeps them: JSON with sorted keys, so equal means equal."""
    return json.dumps(dict(arguments), sort_keys=True)


def _row(schedule: Schedule) -> dict[str, Any]:
    """The table row of a schedule (created now if it has no creation time)."""
    return {
        "id": schedule.id,
        "kind": schedule.kind,
        "arguments": _arguments_text(schedule.arguments),
        "cron": schedule.cron,
        "every": schedule.every,
        "origin": schedule.origin,
        "created": schedule.created or datetime.now(UTC),
        "next_run": schedule.next_run,
        "sensor": schedule.sensor,
    }


def _schedule(row: Any) -> Schedule:
    """The schedule a table row holds; StoreError if its arguments are not a JSON object."""
    try:
        arguments = json.loads(row.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise StoreError(f"schedule {row.id}: its arguments are not a JSON object")
    return Schedule(
        row.id,
        row.kind,
        arguments,
        row.cron,
        row.every,
        row.origin,
        row.created,
        row.next_run,
        row.sensor,
    )


class ScheduleTable:
    """Reads and writes the schedule table; each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._table = SCHEDULE_TABLE

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; a database failure becomes a StoreError."""
        try:
            with self._engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise database_error(self._engine.url, "use the schedules", exc) from exc

    def all(self) -> list[Schedule]:
        """Every stored schedule, by id."""
        with self._begin() as connection:
            rows = connection.execute(select(self._table).order_by(self._table.c.id)).all()
        return [_schedule(row) for row in rows]

    def get(self, schedule_id: str) -> Schedule | None:
        """The schedule with this id, or None."""
        with self._begin() as connection:
            row = connection.execute(
                select(self._table).where(self._table.c.id == schedule_id)
            ).first()
        return None if row is None else _schedule(row)

    def add(self, schedule: Schedule) -> bool:
        """Store a new schedule; False (and nothing changed) if its id is taken."""
        try:
            with self._begin() as connection:
                connection.execute(self._table.insert().values(_row(schedule)))
        except IntegrityError:
            return False
        return True

    def replace(self, schedule: Schedule) -> None:
        """Store a schedule, replacing any with its id."""
        with self._begin() as connection:
            connection.execute(delete(self._table).where(self._table.c.id == schedule.id))
            connection.execute(self._table.insert().values(_row(schedule)))

    def remove(self, schedule_id: str, origin: str) -> bool:
        """Remove the schedule with this id and origin; False if there is none."""
        with self._begin() as connection:
            removed = connection.execute(
                delete(self._table).where(
                    self._table.c.id == schedule_id, self._table.c.origin == origin
                )
            )
        return removed.rowcount > 0

    def sync_origin(self, origin: str, schedules: Iterable[Schedule]) -> None:
        """Make the schedules of origin exactly these; an unchanged one keeps its next run."""
        wanted = {schedule.id: replace(schedule, origin=origin) for schedule in schedules}
        table = self._table
        with self._begin() as connection:
            stored = {
                row.id: _schedule(row)
                for row in connection.execute(select(table).where(table.c.origin == origin))
            }
            gone = sorted(set(stored) - set(wanted))
            if gone:
                connection.execute(delete(table).where(table.c.id.in_(gone)))
            for schedule_id, schedule in wanted.items():
                old = stored.get(schedule_id)
                if old is not None and old.same_job(schedule):
                    continue
                connection.execute(delete(table).where(table.c.id == schedule_id))
                connection.execute(table.insert().values(_row(schedule)))

    def set_next_run(self, schedule: Schedule, when: datetime | None) -> None:
        """Record the next run of a schedule, unless it was changed since it was read."""
        table = self._table
        with self._begin() as connection:
            connection.execute(
                update(table)
                .where(
                    table.c.id == schedule.id,
                    table.c.kind == schedule.kind,
                    table.c.arguments == _arguments_text(schedule.arguments),
                    table.c.cron == schedule.cron,
                    table.c.every == schedule.every,
                    table.c.origin == schedule.origin,
                    table.c.sensor == schedule.sensor,
                )
                .values(next_run=when)
            )
