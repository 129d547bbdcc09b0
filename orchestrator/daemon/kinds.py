"""The kinds of scheduled job, one table: each one's function, arguments and description."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rolecall.orchestrator.config import ScheduleEntry
from rolecall.orchestrator.daemon import jobs
from rolecall.orchestrator.errors import UsageError


@dataclass(frozen=True)
class JobKind:
    """What scheduling needs to know about one kind of job."""

    function: Callable[..., None]
    # The [[schedule]] keys the function takes after the schedule id, in its order; a
    # schedule's stored arguments are exactly these.
    parameters: tuple[str, ...]
    describe: Callable[[Mapping[str, Any]], str]
    # The parameter that must not be empty, and what it is, for the error saying so.
    needs: tuple[str, str] | None = None
    # Seconds between runs when neither a crontab nor an interval is given (0: one is needed).
    default_every: int = 0
    # Parameters added after schedules were first stored: a row without one means None.
    optional: tuple[str, ...] = ()

    def takes(self, names: set[str]) -> bool:
        """Whether stored arguments of these names are this kind's (optional ones may lack)."""
        return set(self.parameters) - set(self.optional) <= names <= set(self.parameters)

    def arguments(self, entry: ScheduleEntry) -> dict[str, Any]:
        """The entry's arguments for this kind (plain JSON data); UsageError if one is missing."""
        if self.needs is not None and not getattr(entry, self.needs[0]):
            raise UsageError(f"schedule {entry.id}: a {entry.job} job needs {self.needs[1]}")
        return {name: getattr(entry, name) for name in self.parameters}

    def call(self, schedule_id: str, arguments: Mapping[str, Any]) -> list[Any]:
        """The function's positional arguments for a schedule with these arguments."""
        return [schedule_id, *(arguments.get(name) for name in self.parameters)]


def _describe_scan(arguments: Mapping[str, Any]) -> str:
    """The subnets, then the ports and probes if given: "10.0.0.0/24 ports 25 probes smtp"."""
    text = " ".join(arguments["subnets"])
    if arguments["ports"]:
        text += f" ports {arguments['ports']}"
    if arguments.get("top_ports"):
        text += f" top-ports {arguments['top_ports']}"
    if arguments["probes"] is not None:
        text += f" probes {','.join(arguments['probes']) or 'none'}"
    if arguments.get("site"):
        text += f" site {arguments['site']}"
    return text


def _describe_ingest(arguments: Mapping[str, Any]) -> str:
    """The watched directory: "watch /var/spool/rolecall"."""
    return f"watch {arguments['watch']}"


def _describe_report_email(arguments: Mapping[str, Any]) -> str:
    """The recipients: "to soc@example.org", or "to [email] to" for the configured ones."""
    return "to " + (", ".join(arguments["to"]) or "[email] to")


KINDS: dict[str, JobKind] = {
    "scan": JobKind(
        jobs.scan,
        ("subnets", "ports", "probes", "top_ports", "site"),
        _describe_scan,
        needs=("subnets", "at least one subnet"),
        optional=("top_ports", "site"),
    ),
    "ingest": JobKind(
        jobs.watch_ingest,
        ("watch",),
        _describe_ingest,
        needs=("watch", "a directory to watch"),
        default_every=60,
    ),
    "report-email": JobKind(jobs.report_email, ("to",), _describe_report_email),
}
