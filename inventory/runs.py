"""Runs: every scan, ingest, report and job recorded from its start to how it ended."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import DBAPIError

from rolecall.inventory.database import BUSY_TIMEOUT_MS
from rolecall.inventory.database_errors import translated
from rolecall.inventory.errors import StoreError
from rolecall.inventory.process_owner import Owner, is_gone, this_process
from rolecall.inventory.tables import RUN_TABLE

STATUSES = ("running", "ok", "partial", "failed", "interrupted")
BY_THE_USER = "interrupted by the user"
TOLD_TO_EXIT = "interrupted: the process was told to exit"


@dataclass
class Run:
    """A run being recorded: its id, what it counted so far, how it ends if nothing raises."""

    id: int
    counts: Counter[str] = field(default_factory=Counter)
    status: str = "ok"
    error: str = ""

    def mark(self, status: Literal["partial", "failed"], error: str = "") -> None:
        """End as partial or failed rather than ok, though nothing raised; error says why."""
        self.status = status
        self.error = error


class RunBook:
    """The run table: runs started and ended, and runs whose process died marked interrupted."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._open: dict[int, Run] = {}
        self._lock = threading.Lock()

    @contextmanager
    def run(self, kind: str, target: str) -> Iterator[Run]:
        """Record a run: ok (or as marked) at the end, failed on an error, interrupted on Ctrl-C.

        The error or interrupt is raised again once the run's end is recorded.
        """
        run = Run(self._start(kind, target))
        with self._lock:
            self._open[run.id] = run
        try:
            yield run
        except (KeyboardInterrupt, SystemExit) as exc:
            self._finish(
                run,
                "interrupted",
                BY_THE_USER if isinstance(exc, KeyboardInterrupt) else TOLD_TO_EXIT,
            )
            raise
        except Exception as exc:
            try:
                self._finish(run, "failed", str(exc))
            except StoreError:
                # The database went away: the first error says so, and the run, still
                # "running", is marked interrupted when the inventory next opens.
                raise exc from None
            raise
        self._finish(run, run.status, run.error)

    def interrupt_open(self, error: str) -> list[int]:
        """Record every run this book started and has not ended as interrupted; return their ids."""
        with self._lock:
            running = sorted(self._open.values(), key=lambda run: run.id)
        for run in running:
            self._finish(run, "interrupted", error)
        return [run.id for run in running]

    def _start(self, kind: str, target: str) -> int:
        """Record the start of a run by this process and return its id."""
        owner = this_process()
        with translated(self._engine.url, "record the start of a run"), self._engine.begin() as db:
            result = db.execute(
                RUN_TABLE.insert().values(
                    kind=kind,
                    target=target,
                    started=datetime.now(UTC),
                    status="running",
                    counts="{}",
                    error="",
                    owner_host=owner.host,
                    owner_pid=owner.pid,
                    owner_process=owner.process,
                )
            )
            key = result.inserted_primary_key
        if key is None:
            raise StoreError("the database did not return the new run's id")
        run_id: int = key[0]
        return run_id

    def _finish(self, run: Run, status: str, error: str) -> None:
        """Record how a run ended, with what it counted, unless its end is recorded already."""
        with self._lock:
            self._open.pop(run.id, None)
        # The first end recorded stands: a daemon's forced stop may record a job's run as
        # interrupted while the job, a moment later, still gets to its own end.
        doing = f"record the end of run {run.id}"
        with translated(self._engine.url, doing), self._engine.begin() as connection:
            connection.execute(
                update(RUN_TABLE)
                .where(RUN_TABLE.c.id == run.id, RUN_TABLE.c.status == "running")
                .values(
                    ended=datetime.now(UTC),
                    status=status,
                    counts=json.dumps(dict(run.counts)),
                    error=error,
                )
            )

    def mark_abandoned(self) -> list[int]:
        """Mark interrupted the runs left running by processes of this host that are gone.

        Housekeeping, never in the way: a database that refuses the write now (read-only,
        or another writer holding SQLite's lock) is left as it is for the next open.
        """
        here = this_process()
        table = RUN_TABLE
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(table.c.id, table.c.owner_pid, table.c.owner_process).where(
                        table.c.status == "running", table.c.owner_host == here.host
                    )
                ).all()
                gone = [
                    (run_id, pid)
                    for run_id, pid, process in rows
                    if is_gone(Owner(here.host, pid, process), here)
                ]
                if gone:
                    with _no_waiting(connection):
                        _mark_interrupted(connection, here.host, gone)
        except DBAPIError:
            return []
        return [run_id for run_id, _ in gone]


def _mark_interrupted(connection: Connection, host: str, gone: list[tuple[int, int]]) -> None:
    """Record each (run, pid) as interrupted because its process ended first, and commit."""
    now = datetime.now(UTC)
    for run_id, pid in gone:
        connection.execute(
            update(RUN_TABLE)
            .where(RUN_TABLE.c.id == run_id, RUN_TABLE.c.status == "running")
            .values(
                ended=now,
                status="interrupted",
                error=f"interrupted: its process (pid {pid} on {host}) ended before the run did",
            )
        )
    connection.commit()


@contextmanager
def _no_waiting(connection: Connection) -> Iterator[None]:
    """On SQLite, fail at once rather than wait out the busy timeout for the write lock."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def start_unowned(connection: Connection, kind: str, target: str) -> int:
    """Record the start of a run no process owns (a cluster scan's workers end it); its id.

    Owner host "" and pid 0: mark_abandoned never takes it for a run whose process died.
    """
    key = connection.execute(
        RUN_TABLE.insert().values(
            kind=kind,
            target=target,
            started=datetime.now(UTC),
            status="running",
            counts="{}",
            error="",
            owner_host="",
            owner_pid=0,
            owner_process="",
        )
    ).inserted_primary_key
    if key is None:
        raise StoreError("the database did not return the new run's id")
    run_id: int = key[0]
    return run_id


def end_unowned(
    connection: Connection, run_id: int, status: str, counts: dict[str, int], error: str
) -> bool:
    """Record how an unowned run ended unless its end is recorded; whether this call did."""
    result = connection.execute(
        update(RUN_TABLE)
        .where(RUN_TABLE.c.id == run_id, RUN_TABLE.c.status == "running")
        .values(ended=datetime.now(UTC), status=status, counts=json.dumps(counts), error=error)
    )
    return bool(result.rowcount)
