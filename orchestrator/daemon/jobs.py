"""The scheduled jobs: module-level functions with plain arguments, run by the daemon."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.orchestrator.daemon.log import event
from rolecall.orchestrator.daemon.watch import FAILED_DIR, ready_files, set_aside
from rolecall.orchestrator.errors import RunError
from rolecall.orchestrator.progress import Reporter
from rolecall.orchestrator.runs.ingest import ingest_files
from rolecall.orchestrator.runs.report import email_report
from rolecall.orchestrator.runs.scan import scan_subnets
from rolecall.orchestrator.settings import derive_settings, reader


@dataclass
class JobContext:
    """What jobs need from the daemon: the inventory, the current config, the log."""

    store: Store
    config: Config
    logger: logging.Logger
    active: int = 0
    idle: threading.Condition = field(default_factory=threading.Condition)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs; return False if one still runs after timeout seconds."""
        with self.idle:
            return self.idle.wait_for(lambda: self.active == 0, timeout)


class _Binding:
    """The daemon's context, bound while it runs (jobs are looked up by name, not closures)."""

    context: JobContext | None = None


def bind(context: JobContext | None) -> None:
    """Make context the one jobs run against (None when the daemon stops)."""
    _Binding.context = context


def current() -> JobContext:
    """The bound context; RunError outside a daemon."""
    if _Binding.context is None:
        raise RunError("scheduled jobs run only inside `rolecall run`")
    return _Binding.context


def _recorded(job_id: str, what: str, target: str, body: Callable[[Store, Config], str]) -> None:
    """Run body as one recorded run; failures are logged and recorded, never raised."""
    context = current()
    with context.idle:
        context.active += 1
    store, config = context.store, context.config
    run_id: int | None = None
    try:
        with store.run(f"scheduled {what}", f"{job_id}: {target}") as run:
            run_id = run.id
            event(context.logger, "job-start", job=job_id, what=what, target=target, run=run_id)
            outcome = body(store, config)
    except Exception as exc:
        event(
            context.logger,
            "job-failed",
            logging.ERROR,
            job=job_id,
            what=what,
            run=run_id,
            error=f"{type(exc).__name__}: {exc}",
        )
    else:
        event(context.logger, "job-ok", job=job_id, what=what, run=run_id, outcome=outcome)
    finally:
        with context.idle:
            context.active -= 1
            context.idle.notify_all()


def scan(
    job_id: str,
    subnets: list[str],
    ports: str | None,
    probes: list[str] | None,
    top_ports: int | None = None,
    site: str | None = None,
) -> None:
    """Scheduled `scan subnet` (top_ports: nmap's N most common ports instead of ports).

    With a site, the scan is queued to that site's workers: the job's run says which run
    holds the chunks, and the workers end that one.
    """
    if site:
        _recorded(
            job_id, "scan", " ".join(subnets), _queued_scan(subnets, ports, probes, top_ports, site)
        )
        return

    def body(store: Store, config: Config) -> str:
        quiet = Reporter(quiet=True)
        summary = scan_subnets(store, config, subnets, quiet, ports, probes, top_ports)
        counts = summary.counts
        # Prefixes too wide to sweep are said in the outcome, as the command says them.
        return "; ".join(
            [
                f"run {summary.run_id}: {counts['hosts_up']} hosts up,"
                f" {counts['open_ports']} open ports",
                *summary.notices,
            ]
        )

    _recorded(job_id, "scan", " ".join(subnets), body)


def _queued_scan(
    subnets: list[str],
    ports: str | None,
    probes: list[str] | None,
    top_ports: int | None,
    site: str,
) -> Callable[[Store, Config], str]:
    """A job body queueing a scan to a site's workers (rolecall.cluster), not waiting for it."""

    def body(store: Store, config: Config) -> str:
        # Loaded when such a job runs: a daemon without site scans never loads Celery.
        from rolecall.cluster.coordinator import queue_scan  # noqa: PLC0415

        queued = queue_scan(
            store, config, subnets, site, Reporter(quiet=True), ports, probes, top_ports
        )
        return "; ".join(
            [
                f"queued run {queued.run_id}: {queued.addresses} addresses in"
                f" {queued.chunks} chunks to site {site}",
                *queued.notices,
            ]
        )

    return body


def ingest_ready(store: Store, config: Config, directory: Path) -> list[str]:
    """Ingest each settled capture or Zeek log in directory once, then move it to done/."""
    if not directory.is_dir():
        raise RunError(f"watched directory {directory} does not exist")
    outcomes = []
    for kind, path in ready_files(directory, config.daemon.watch_settle):
        summary = ingest_files(
            store, kind, [path], reader(config, kind), Reporter(quiet=True), derive_settings(config)
        )
        folder = FAILED_DIR if summary.failures else "done"
        moved = set_aside(path, folder)
        outcomes.append(f"{path.name}: {folder} (run {summary.run_id}) -> {moved}")
    return outcomes


def watch_ingest(job_id: str, directory: str) -> None:
    """Scheduled ingest of a watched directory's new files (a look that finds none is no run)."""
    context = current()
    folder = Path(directory)
    if folder.is_dir() and not ready_files(folder, context.config.daemon.watch_settle):
        event(context.logger, "watch-idle", logging.DEBUG, job=job_id, directory=directory)
        return

    def body(store: Store, config: Config) -> str:
        done = ingest_ready(store, config, Path(directory))
        return "; ".join(done) if done else "nothing new"

    _recorded(job_id, "ingest", directory, body)


def report_email(job_id: str, to: Sequence[str]) -> None:
    """Scheduled weekly report by email (the last seven days)."""

    def body(store: Store, config: Config) -> str:
        sent = email_report(store, config, to=list(to) or None)
        return f"run {sent.run_id}: {sent.subject!r} to {', '.join(sent.recipients)}"

    _recorded(job_id, "report-email", ", ".join(to) or "[email] to", body)
