"""The daemon's APScheduler 3: jobs in memory, built from the schedule table, kept equal to it."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from rolecall.inventory.errors import StoreError
from rolecall.inventory.schedules import Schedule
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import MAX_IPV6_SWEEP, DaemonConfig, ScopeConfig
from rolecall.orchestrator.daemon.log import event
from rolecall.orchestrator.daemon.schedules import job_parts
from rolecall.orchestrator.errors import UsageError


def make_scheduler(daemon: DaemonConfig, workers: int = 4) -> BackgroundScheduler:
    """A scheduler with its jobs in memory; one run per job at a time, misses coalesced."""
    return BackgroundScheduler(
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


class ScheduledJobs:
    """The scheduler's jobs, made equal to the schedule table by sync(); next runs written back.

    Each job is built from its row alone (a job kind, plain arguments, a trigger), so what
    the table holds decides only which known job runs when, never what code runs.
    """

    def __init__(
        self,
        scheduler: BackgroundScheduler,
        store: Store,
        logger: logging.Logger,
        scope: ScopeConfig | None = None,
        max_ipv6_sweep: int = MAX_IPV6_SWEEP,
        sensor: str = "",
    ) -> None:
        self._scheduler = scheduler
        # Only the schedules bound to this sensor ("" : the central daemon's, bound to none).
        self._sensor = sensor
        # A scan outside the scope is not loaded: it would only record a failed run each time.
        # Without one given, none is configured: only this machine's addresses are in scope.
        self._scope = scope if scope is not None else ScopeConfig()
        self._max_ipv6_sweep = max_ipv6_sweep
        self._store = store
        self._logger = logger
        self._loaded: dict[str, Schedule] = {}
        self._refused: dict[str, Schedule] = {}
        self._failure = ""
        # Right after APScheduler moves a job's next run (in its own thread, as its SQL job
        # store did), so a run missed while the daemon is down still happens on its start.
        scheduler.add_listener(self._moved, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)

    def sync(self) -> None:
        """Add, replace and remove jobs so they match the table; a failure is logged once."""
        try:
            stored = {
                schedule.id: schedule
                for schedule in self._store.schedules.all()
                if schedule.sensor == self._sensor
            }
        except StoreError as exc:
            if str(exc) != self._failure:
                event(self._logger, "schedules-unreadable", logging.ERROR, error=str(exc))
            self._failure = str(exc)
            return
        self._failure = ""
        removed = sorted(set(self._loaded) - set(stored))
        for schedule_id in removed:
            self._unload(schedule_id)
        self._refused = {key: self._refused[key] for key in self._refused if key in stored}
        loaded = [schedule.id for schedule in stored.values() if self._load(schedule)]
        if removed or loaded:
            event(self._logger, "schedules-synced", loaded=loaded, removed=removed)

    def rescope(self, scope: ScopeConfig, max_ipv6_sweep: int = MAX_IPV6_SWEEP) -> None:
        """Check every loaded schedule against a new scope (a reloaded config); refuse those out."""
        self._scope, self._max_ipv6_sweep = scope, max_ipv6_sweep
        self._refused.clear()
        for schedule in list(self._loaded.values()):
            try:
                job_parts(schedule, scope, max_ipv6_sweep)
            except UsageError as exc:
                self._refuse(schedule, exc)

    def _refuse(self, schedule: Schedule, error: UsageError) -> None:
        """Log a schedule that cannot run, and keep it unloaded until its row changes."""
        event(self._logger, "schedule-refused", logging.ERROR, job=schedule.id, error=str(error))
        self._refused[schedule.id] = schedule
        self._unload(schedule.id)

    def _load(self, schedule: Schedule) -> bool:
        """Build (or rebuild) the job of a new or changed schedule; whether one was built."""
        old = self._loaded.get(schedule.id) or self._refused.get(schedule.id)
        if old is not None and old.same_job(schedule):
            return False
        try:
            parts = job_parts(schedule, self._scope, self._max_ipv6_sweep)
        except UsageError as exc:
            self._refuse(schedule, exc)
            return False
        self._refused.pop(schedule.id, None)
        # A stored next run (even a past one, within misfire_grace_time) is kept.
        start = {"next_run_time": schedule.next_run} if schedule.next_run else {}
        self._scheduler.add_job(
            parts.kind.function,
            parts.trigger,
            args=parts.args,
            id=schedule.id,
            name=schedule.kind,
            replace_existing=True,
            **start,
        )
        self._loaded[schedule.id] = schedule
        return True

    def _unload(self, schedule_id: str) -> None:
        """Remove a schedule's job, if it has one."""
        if self._loaded.pop(schedule_id, None) is None:
            return
        # APScheduler itself drops a job whose trigger has no run left.
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(schedule_id)

    def _moved(self, happened: JobEvent) -> None:
        """Write a job's new next run into its row (unless the row changed meanwhile)."""
        schedule = self._loaded.get(happened.job_id)
        job = self._scheduler.get_job(happened.job_id)
        if schedule is None or job is None:
            return
        try:
            self._store.schedules.set_next_run(schedule, job.next_run_time)
        except StoreError as exc:
            event(
                self._logger,
                "schedule-next-run-unsaved",
                logging.WARNING,
                job=happened.job_id,
                error=str(exc),
            )
