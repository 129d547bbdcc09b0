"""`rolecall run`: the scheduler daemon, its signals, its lock and its clean stop."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler

from rolecall.errors import BadInputError
from rolecall.inventory.exports import iso
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, load_config
from rolecall.orchestrator.daemon import jobs
from rolecall.orchestrator.daemon.alert_retries import AlertRetries
from rolecall.orchestrator.daemon.daily_prune import JOB_ID as DAILY_PRUNE_JOB
from rolecall.orchestrator.daemon.daily_prune import schedule_daily_prune
from rolecall.orchestrator.daemon.log import close_logging, configure_logging, event
from rolecall.orchestrator.daemon.scheduler import ScheduledJobs, make_scheduler
from rolecall.orchestrator.daemon.schedules import sync_config
from rolecall.orchestrator.interrupts import uninterrupted
from rolecall.orchestrator.runs.alerts import deliver_after_derive, deliver_configured
from rolecall.orchestrator.scope import wide_scope_notice

POLL_SECONDS = 0.2
# How often the daemon reads the schedule table, so `schedule add|remove` take effect.
SYNC_SECONDS = 2.0
FORCED_EXIT = 1


@dataclass
class _Signals:
    """What signals asked for; set by handlers, acted on by the main loop."""

    stop: str = ""
    reload: bool = False

    def install(self) -> None:
        """Take SIGTERM, SIGINT (stop) and SIGHUP (reload)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        """Ask the loop to stop."""
        self.stop = signal.Signals(signum).name

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        """Ask the loop to reload the config."""
        self.reload = True


def _schedules(scheduler: BackgroundScheduler) -> list[str]:
    """Each stored schedule as "id next-run" (the daemon's own jobs, e.g. the prune, left out)."""
    return [
        f"{job.id} {iso(job.next_run_time)}"
        for job in scheduler.get_jobs()
        if job.id != DAILY_PRUNE_JOB
    ]


def _listen(scheduler: BackgroundScheduler, logger: logging.Logger) -> None:
    """Log runs APScheduler skipped: missed past their grace time, or still running."""

    def on_event(happened: JobEvent) -> None:
        name = "job-missed" if happened.code == EVENT_JOB_MISSED else "job-skipped-still-running"
        event(logger, name, logging.WARNING, job=happened.job_id)

    scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)


def _reload(
    scheduled: ScheduledJobs, context: jobs.JobContext, config_path: Path | None, sensor: str
) -> None:
    """Read the config again; a bad one is logged and the old one kept."""
    try:
        config, _ = load_config(config_path)
        # A sensor's config is its host's: the [[schedule]] entries are the central one's.
        ids = [] if sensor else sync_config(context.store, config)
    except BadInputError as exc:
        event(context.logger, "config-reload-failed", logging.ERROR, error=str(exc))
        return
    scheduled.rescope(config.scope, config.scan.max_ipv6_sweep)
    scheduled.sync()
    context.config = config
    context.logger = configure_logging(config.daemon.log_file, config.daemon.log_level)
    event(context.logger, "config-reloaded", config=str(config_path or ""), config_schedules=ids)


def _stop(scheduler: BackgroundScheduler, context: jobs.JobContext, cause: str) -> bool:
    """Stop scheduling, let running jobs finish; False if one outlived the stop timeout."""
    event(context.logger, "daemon-stopping", signal=cause, running=context.active)
    scheduler.shutdown(wait=False)
    timeout = context.config.daemon.stop_timeout
    if context.wait_idle(timeout):
        return True
    interrupted = context.store.interrupt_open_runs(
        f"the daemon stopped ({cause}) before the job finished"
    )
    event(
        context.logger,
        "daemon-forced-stop",
        logging.ERROR,
        interrupted_runs=interrupted,
        waited=timeout,
    )
    return False


def _alert_delivery(store: Store, context: jobs.JobContext) -> AlertRetries:
    """Deliver alerts after each derivation, and those left waiting on a timer (not started)."""
    deliver_after_derive(
        store,
        lambda: context.config,
        lambda message: event(context.logger, "alerts-waiting", logging.WARNING, error=message),
    )
    return AlertRetries(
        lambda: deliver_configured(
            store,
            context.config,
            lambda message: event(context.logger, "alerts-waiting", logging.WARNING, error=message),
        ),
        context.config.daemon.alert_retry_seconds,
        lambda error: event(context.logger, "alerts-retry-failed", logging.ERROR, error=error),
    )


def _serve(
    store: Store, config: Config, config_path: Path | None, logger: logging.Logger, sensor: str
) -> bool:
    """Run the schedules until a stop signal; return whether every job ended by itself.

    A sensor's daemon runs that sensor's schedules only; the central one (sensor "") runs
    the others, the config's [[schedule]] entries, alert delivery and the daily prune.
    """
    scheduler = make_scheduler(config.daemon)
    scheduled = ScheduledJobs(
        scheduler, store, logger, config.scope, config.scan.max_ipv6_sweep, sensor
    )
    context = jobs.JobContext(store, config, logger)
    retries = None if sensor else _alert_delivery(store, context)
    signals = _Signals()
    signals.install()
    jobs.bind(context)
    try:
        scheduler.start(paused=True)
        ids = [] if sensor else sync_config(store, config)
        scheduled.sync()
        if not sensor:
            schedule_daily_prune(scheduler)
        _listen(scheduler, logger)
        scheduler.resume()
        event(
            logger,
            "daemon-start",
            pid=os.getpid(),
            database=store.name,
            sensor=sensor,
            config_schedules=ids,
            schedules=_schedules(scheduler),
        )
        # Events left waiting by a receiver that was down, or by a daemon that stopped.
        if retries is not None:
            retries.start()
        # A sensor's daemon scans nothing: its scope is no matter.
        if not sensor and (wide := wide_scope_notice(config.scope)):
            event(logger, "scope-wide", logging.WARNING, notice=wide)
        synced = time.monotonic()
        while not signals.stop:
            time.sleep(POLL_SECONDS)
            if signals.reload:
                signals.reload = False
                _reload(scheduled, context, config_path, sensor)
            if time.monotonic() - synced >= SYNC_SECONDS:
                synced = time.monotonic()
                scheduled.sync()
        if retries is not None:
            retries.stop(context.config.daemon.stop_timeout)
        clean = _stop(scheduler, context, signals.stop)
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        jobs.bind(None)
    event(context.logger, "daemon-stop", clean=clean)
    return clean


def run_daemon(database: str, config: Config, config_path: Path | None, sensor: str = "") -> int:
    """Run the daemon on database until SIGTERM/SIGINT; 0 after a clean stop.

    With a sensor, the daemon of that sensor (its watched folders on this host). A second
    daemon for the same sensor (or a second central one) on the same database is refused
    (StoreError). If a job is still running stop_timeout seconds after the signal, its
    runs are recorded as interrupted and the process ends at once (its open transaction
    is rolled back by the database, so nothing half-written remains).
    """
    logger = configure_logging(config.daemon.log_file, config.daemon.log_level)
    # Creating the schema half-way would leave a database no command can use.
    store = uninterrupted(partial(Store.open, database))
    try:
        with store.daemon_lock(sensor):
            clean = _serve(store, config, config_path, logger, sensor)
    finally:
        close_logging()
    if not clean:
        os._exit(FORCED_EXIT)
    store.close()
    return 0
