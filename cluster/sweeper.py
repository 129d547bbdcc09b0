"""Chunks no worker will end: one running past every limit is failed, a queued one noted stale.

A chunk's worker records its end; if the worker is gone and the broker no longer holds the
chunk (acknowledged by a worker of another inventory, purged, lost with a broker's data),
nothing ever would. The coordinator following a run and every worker sweep such chunks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from rolecall.inventory.scan_chunks import Chunk
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import ClusterConfig

RESTORE_SLACK_SECONDS = 15
"""Beyond the visibility timeout: the workers look for unacknowledged chunks every 10 s."""


def stale_seconds(cluster: ClusterConfig) -> float:
    """How long a chunk may go unchanged before it is stale: its time limit, then redelivery."""
    return float(cluster.chunk_time_limit + cluster.visibility_timeout + RESTORE_SLACK_SECONDS)


def _utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (a database may hand it back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    """A time as the sentences here show it."""
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def sweep(store: Store, cluster: ClusterConfig, now: datetime | None = None) -> list[str]:
    """Fail stale running chunks, note stale queued ones, end runs so finished; what was done."""
    now = now or datetime.now(UTC)
    bound = timedelta(seconds=stale_seconds(cluster))
    chunks = store.scan_chunks
    waiting = chunks.waiting()
    done: list[str] = []
    finished: set[int] = set()
    for chunk in waiting:
        if chunk.state == "running" and chunk.started and now - _utc(chunk.started) > bound:
            error = (
                f"stale: running on {chunk.worker or '-'} since {_when(chunk.started)}, longer"
                " than [cluster] chunk_time_limit + visibility_timeout: no worker will end it"
            )
            if chunks.fail_running(chunk, error):
                done.append(f"run {chunk.run_id} chunk {chunk.position}: {error}")
                finished.add(chunk.run_id)
    for run_id in sorted({chunk.run_id for chunk in waiting if chunk.state == "queued"}):
        queued = [chunk for chunk in waiting if chunk.run_id == run_id and chunk.state == "queued"]
        done += _note_idle(store, run_id, queued, now, bound)
    for run_id in sorted(finished):
        _end_if_complete(store, run_id)
    return done


def _note_idle(
    store: Store, run_id: int, queued: list[Chunk], now: datetime, bound: timedelta
) -> list[str]:
    """Note the queued chunks of a run no chunk of which was taken or ended within bound."""
    progress = store.scan_chunks.progress(run_id)
    moments = [chunk.queued for chunk in queued]
    moments += [m for m in (progress.newest_start, progress.newest_end) if m is not None]
    last = max(_utc(moment) for moment in moments)
    if now - last <= bound:
        return []
    noted = []
    for chunk in queued:
        error = (
            f"stale: queued since {_when(chunk.queued)} and no chunk of run {run_id} taken or"
            f" ended since {_when(last)}: is a worker of site {chunk.site} running on this"
            f" inventory (`rolecall worker --site {chunk.site}`)?"
        )
        if store.scan_chunks.note(chunk.id, "queued", error):
            noted.append(f"run {run_id} chunk {chunk.position}: {error}")
    return noted


def _end_if_complete(store: Store, run_id: int) -> None:
    """End the run, derived, if a swept chunk was its last one not ended."""
    state = store.scan_chunks.state(run_id)
    if state.status != "running" or any(c.state in ("queued", "running") for c in state.chunks):
        return
    derived = store.derive()
    status = store.scan_chunks.end_run_if_complete(
        run_id, {"roles": derived.roles, "findings": derived.findings}
    )
    if status:
        logging.getLogger("rolecall.worker").info("run %d: ended %s (swept)", run_id, status)
