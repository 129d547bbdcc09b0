"""The scan_chunk table: a cluster scan's queued pieces, taken and ended by site workers.

The only code that reads or writes scan_chunk. A chunk's records and its state `done` commit
in one transaction, so a worker killed mid-chunk leaves nothing and the redo stores the
same rows; the worker ending a run's last chunk ends the run (a guarded update: one does).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, case, func, select, update

from rolecall.inventory.database_errors import translated
from rolecall.inventory.errors import StoreError
from rolecall.inventory.runs import end_unowned, start_unowned
from rolecall.inventory.tables import RUN_TABLE, SCAN_CHUNK_TABLE
from rolecall.probes.records import Record

if TYPE_CHECKING:
    from rolecall.inventory.store import RecordWriter

STATES = ("queued", "running", "done", "failed", "refused", "interrupted")
ENDED = frozenset({"done", "failed", "refused", "interrupted"})
"""A chunk in one of these states is not taken again."""


@dataclass(frozen=True)
class Chunk:
    """One chunk as stored: where it runs, what it scans, how far it got."""

    id: int
    run_id: int
    position: int
    site: str
    targets: tuple[str, ...]
    addresses: int
    state: str
    task_id: str
    worker: str
    attempts: int
    queued: datetime
    started: datetime | None
    ended: datetime | None
    counts: dict[str, int]
    error: str

    @classmethod
    def of(cls, row: Any) -> Chunk:
        """A chunk from a scan_chunk row."""
        return cls(
            id=row.id,
            run_id=row.run_id,
            position=row.position,
            site=row.site,
            targets=tuple(row.targets.split()),
            addresses=row.addresses,
            state=row.state,
            task_id=row.task_id,
            worker=row.worker,
            attempts=row.attempts,
            queued=row.queued,
            started=row.started,
            ended=row.ended,
            counts=json.loads(row.counts),
            error=row.error,
        )


@dataclass(frozen=True)
class RunState:
    """A cluster run as its coordinator follows it: its status and its chunks."""

    run_id: int
    status: str
    error: str
    counts: dict[str, int]
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class RunProgress:
    """How far a cluster run got, in one cheap read: equal twice means nothing changed."""

    status: str
    ended: int
    newest_start: datetime | None
    newest_end: datetime | None


def task_id(run_id: int, position: int) -> str:
    """The broker's id of a chunk's task: the same on every delivery."""
    return f"rolecall-scan-{run_id}-{position}"


class ScanChunks:
    """Cluster scans in the inventory: runs queued in chunks, chunks taken and ended."""

    def __init__(self, engine: Engine, writer: Callable[[Connection], RecordWriter]) -> None:
        self._engine = engine
        self._writer = writer
        self._table = SCAN_CHUNK_TABLE

    @contextmanager
    def _begin(self, doing: str) -> Iterator[Connection]:
        """A transaction; a database error is "cannot DOING in database X"."""
        with translated(self._engine.url, doing), self._engine.begin() as connection:
            yield connection

    def queue(
        self, target: str, site: str, pieces: Sequence[tuple[str, int]]
    ) -> tuple[int, list[Chunk]]:
        """Record a scan run and its chunks (targets text, addresses) as queued, together."""
        now = datetime.now(UTC)
        with self._begin("record a queued scan") as connection:
            run_id = start_unowned(connection, "scan", target)
            connection.execute(
                self._table.insert(),
                [
                    {
                        "run_id": run_id,
                        "position": position,
                        "site": site,
                        "targets": targets,
                        "addresses": addresses,
                        "state": "queued",
                        "task_id": task_id(run_id, position),
                        "worker": "",
                        "attempts": 0,
                        "queued": now,
                        "counts": "{}",
                        "error": "",
                    }
                    for position, (targets, addresses) in enumerate(pieces)
                ],
            )
            return run_id, self._of_run(connection, run_id)

    def get(self, chunk_id: int) -> Chunk | None:
        """The chunk with this id (None if there is none)."""
        with self._begin("read a scan chunk") as connection:
            row = connection.execute(
                select(self._table).where(self._table.c.id == chunk_id)
            ).first()
        return None if row is None else Chunk.of(row)

    def take(self, chunk_id: int, worker: str) -> Chunk | None:
        """Mark a chunk running by worker (one more attempt); None if it has ended already."""
        with self._begin("take a scan chunk") as connection:
            result = connection.execute(
                update(self._table)
                .where(self._table.c.id == chunk_id, self._table.c.state.not_in(ENDED))
                .values(
                    state="running",
                    worker=worker,
                    attempts=self._table.c.attempts + 1,
                    started=datetime.now(UTC),
                    error="",
                )
            )
            if not result.rowcount:
                return None
            row = connection.execute(select(self._table).where(self._table.c.id == chunk_id)).one()
        return Chunk.of(row)

    def end(self, chunk_id: int, state: str, error: str, worker: str = "") -> bool:
        """End a chunk without records (failed, refused, interrupted); whether this call did."""
        values: dict[str, Any] = {"state": state, "error": error, "ended": datetime.now(UTC)}
        if worker:
            values["worker"] = worker
        with self._begin(f"record scan chunk {chunk_id} {state}") as connection:
            result = connection.execute(
                update(self._table)
                .where(self._table.c.id == chunk_id, self._table.c.state.not_in(ENDED))
                .values(**values)
            )
        return bool(result.rowcount)

    def complete(self, chunk_id: int, records: Iterable[Record], counts: Counter[str]) -> bool:
        """Store a chunk's records and its state done in one transaction; False if done before.

        The state changes first: a second worker finishing the same chunk waits on that
        row, then finds it done and writes nothing (no observation counted twice).
        """
        with self._begin(f"store scan chunk {chunk_id}") as connection:
            result = connection.execute(
                update(self._table)
                .where(self._table.c.id == chunk_id, self._table.c.state.not_in(ENDED))
                .values(
                    state="done",
                    error="",
                    ended=datetime.now(UTC),
                    counts=json.dumps(dict(counts), sort_keys=True),
                )
            )
            if not result.rowcount:
                connection.rollback()
                return False
            writer = self._writer(connection)
            writer.add_all(records)
            writer.flush()
        return True

    def end_run_if_complete(self, run_id: int, derived: dict[str, int]) -> str:
        """End the run if every chunk has ended: ok, partial or failed; "" if not (or not us).

        Its counts are the chunks' summed, plus derived (roles, findings).
        """
        with self._begin(f"end run {run_id}") as connection:
            chunks = self._of_run(connection, run_id)
            if not chunks or any(chunk.state not in ENDED for chunk in chunks):
                return ""
            counts: Counter[str] = Counter()
            for chunk in chunks:
                counts.update(chunk.counts)
            counts.update(derived)
            counts["chunks"] = len(chunks)
            status, error = _outcome(chunks)
            if not end_unowned(connection, run_id, status, dict(counts), error):
                return ""
        return status

    def end_run(self, run_id: int, status: str, error: str) -> bool:
        """End a run and its chunks not yet ended (e.g. queueing failed); whether this did."""
        with self._begin(f"end run {run_id}") as connection:
            connection.execute(
                update(self._table)
                .where(self._table.c.run_id == run_id, self._table.c.state.not_in(ENDED))
                .values(state=status, error=error, ended=datetime.now(UTC))
            )
            return end_unowned(connection, run_id, status, {}, error)

    def state(self, run_id: int) -> RunState:
        """The run's status and chunks, as its coordinator follows it."""
        run = RUN_TABLE
        with self._begin(f"read run {run_id}") as connection:
            row = connection.execute(
                select(run.c.status, run.c.error, run.c.counts).where(run.c.id == run_id)
            ).first()
            if row is None:
                raise StoreError(f"no run {run_id} in the inventory")
            chunks = self._of_run(connection, run_id)
        return RunState(run_id, row.status, row.error, json.loads(row.counts), tuple(chunks))

    def progress(self, run_id: int) -> RunProgress:
        """The run's status, chunks ended and newest start and end: two indexed aggregates."""
        run = RUN_TABLE
        table = self._table
        with self._begin(f"read run {run_id}") as connection:
            status = connection.execute(select(run.c.status).where(run.c.id == run_id)).scalar()
            if status is None:
                raise StoreError(f"no run {run_id} in the inventory")
            row = connection.execute(
                select(
                    func.coalesce(func.sum(case((table.c.state.in_(ENDED), 1), else_=0)), 0),
                    func.max(table.c.started),
                    func.max(table.c.ended),
                ).where(table.c.run_id == run_id)
            ).one()
        return RunProgress(status, int(row[0]), row[1], row[2])

    def ended_chunks(self, run_id: int, known: Collection[int]) -> list[Chunk]:
        """The run's ended chunks, in order, but those at the positions in known."""
        table = self._table
        query = select(table).where(table.c.run_id == run_id, table.c.state.in_(ENDED))
        if known:
            query = query.where(table.c.position.not_in(list(known)))
        with self._begin(f"read run {run_id}") as connection:
            rows = connection.execute(query.order_by(table.c.position))
            return [Chunk.of(row) for row in rows]

    def waiting(self) -> list[Chunk]:
        """Every chunk queued or running, of any run (the sweeper's look for stale ones)."""
        table = self._table
        with self._begin("read the scan chunks not ended") as connection:
            rows = connection.execute(
                select(table).where(table.c.state.in_(("queued", "running"))).order_by(table.c.id)
            )
            return [Chunk.of(row) for row in rows]

    def note(self, chunk_id: int, state: str, error: str) -> bool:
        """Say error on a chunk still in state (it stays so); whether it still was."""
        table = self._table
        with self._begin(f"note scan chunk {chunk_id} stale") as connection:
            result = connection.execute(
                update(table)
                .where(table.c.id == chunk_id, table.c.state == state, table.c.error != error)
                .values(error=error)
            )
        return bool(result.rowcount)

    def fail_running(self, chunk: Chunk, error: str) -> bool:
        """Fail a chunk still running since chunk.started (no later take); whether this did."""
        table = self._table
        with self._begin(f"record scan chunk {chunk.id} failed") as connection:
            result = connection.execute(
                update(table)
                .where(
                    table.c.id == chunk.id,
                    table.c.state == "running",
                    table.c.attempts == chunk.attempts,
                )
                .values(state="failed", error=error, ended=datetime.now(UTC))
            )
        return bool(result.rowcount)

    def _of_run(self, connection: Connection, run_id: int) -> list[Chunk]:
        """The chunks of a run, in order."""
        rows = connection.execute(
            select(self._table)
            .where(self._table.c.run_id == run_id)
            .order_by(self._table.c.position)
        )
        return [Chunk.of(row) for row in rows]


def chunks_by_run(connection: Connection) -> dict[int, list[Chunk]]:
    """Every cluster run's chunks by run id, in order (for `runs` and `export runs`)."""
    table = SCAN_CHUNK_TABLE
    found: dict[int, list[Chunk]] = {}
    for row in connection.execute(select(table).order_by(table.c.run_id, table.c.position)):
        found.setdefault(row.run_id, []).append(Chunk.of(row))
    return found


def chunk_export(chunk: Chunk) -> dict[str, Any]:
    """A chunk as `runs` and `export runs` show it (times as datetimes, for the caller)."""
    return {
        "site": chunk.site,
        "position": chunk.position,
        "targets": " ".join(chunk.targets),
        "state": chunk.state,
        "worker": chunk.worker,
        "attempts": chunk.attempts,
        "started": chunk.started,
        "ended": chunk.ended,
        "error": chunk.error,
    }


def _outcome(chunks: Sequence[Chunk]) -> tuple[str, str]:
    """How a run whose chunks all ended ended: ok, partial or failed, and what failed."""
    bad = [chunk for chunk in chunks if chunk.state != "done"]
    if not bad:
        return "ok", ""
    said = "; ".join(
        f"chunk {chunk.position} ({' '.join(chunk.targets)}) {chunk.state}: {chunk.error}"
        for chunk in bad
    )
    return ("partial" if len(bad) < len(chunks) else "failed"), said
