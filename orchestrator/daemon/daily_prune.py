"""The daemon's daily prune: retention applied when the daemon starts and every day after."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from rolecall.orchestrator.daemon import jobs
from rolecall.orchestrator.daemon.log import event
from rolecall.orchestrator.runs.prune import RUN_KIND, prune_store

# Not a schedule id anyone can give: those are letters, digits, "_", "." and "-", and the
# config's own schedules are named "config:ID".
JOB_ID = "internal:prune"


def daily_prune() -> None:
    """Prune per-event rows older than [retention] days; failures are logged, never raised."""
    context = jobs.current()
    with context.idle:
        context.active += 1
    try:
        event(context.logger, "job-start", job=JOB_ID, what=RUN_KIND)
        outcome = prune_store(context.store, context.config)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        event(context.logger, "job-failed", logging.ERROR, job=JOB_ID, what=RUN_KIND, error=error)
    else:
        event(
            context.logger,
            "job-ok",
            job=JOB_ID,
            what=RUN_KIND,
            run=outcome.run_id,
            outcome=outcome.text(),
            removed=outcome.summary.removed,
        )
    finally:
        with context.idle:
            context.active -= 1
            context.idle.notify_all()


def schedule_daily_prune(scheduler: BaseScheduler) -> None:
    """Run daily_prune once now (a daemon restarted every day still prunes), then daily."""
    scheduler.add_job(
        daily_prune,
        IntervalTrigger(days=1, timezone=UTC),
        id=JOB_ID,
        name=RUN_KIND,
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
