"""`report` and `report email`: the library jobs the command line and the scheduler call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

from rolecall.inventory.store import Store, utcnow
from rolecall.orchestrator.config import Config, config_error
from rolecall.orchestrator.errors import RunError, UsageError
from rolecall.orchestrator.output_file import STDOUT, output_text
from rolecall.orchestrator.settings import geo_lookup, relay_settings
from rolecall.reports.build import ReportSettings, build_report
from rolecall.reports.delivery import Attachment, build_message, send
from rolecall.reports.errors import DeliveryError, ReportInputError
from rolecall.reports.model import ReportData
from rolecall.reports.period_tables import write_csv, write_json
from rolecall.reports.render import EMAIL_TEMPLATE, REPORT_TEMPLATE, render

REPORT_FORMATS = ("html", "csv", "json")
# The output path that means standard output.
RUN_KIND = "report-email"


@dataclass(frozen=True)
class EmailOutcome:
    """What a sent report was: its run, subject, recipients, new findings and kept files."""

    run_id: int
    subject: str
    recipients: tuple[str, ...]
    new_findings: int
    kept: Path


def default_period(now: datetime | None = None, days: int = 7) -> tuple[datetime, datetime]:
    """(since, until): the last `days` days up to now, aware UTC."""
    until = now or utcnow()
    return until - timedelta(days=days), until


def _is_address(text: str) -> bool:
    """Whether text is one plain mail address (no name, no line breaks, one @)."""
    name, address = parseaddr(text)
    return (
        address == text.strip()
        and not name
        and address.count("@") == 1
        and not any(c in address for c in "\r\n\t ,;<>")
    )


def changes_path(out: Path) -> Path:
    """Where the changes CSV goes beside a findings CSV."""
    return out.with_name(f"{out.stem}-changes.csv")


def _template_dir(config: Config) -> Path | None:
    """The user's template folder, if configured; UsageError naming the config if it is none."""
    if not config.report.template_dir:
        return None
    folder = Path(config.report.template_dir)
    if not folder.is_dir():
        raise config_error(config, f"report.template_dir: {folder} is not a directory")
    return folder


def report_data(store: Store, config: Config, since: datetime, until: datetime) -> ReportData:
    """Read everything the report of [since, until) shows."""
    geo = geo_lookup(config)
    try:
        with store.read("read the report's data") as connection:
            settings = ReportSettings(row_limit=config.report.html_rows)
            return build_report(connection, settings, since, until, geo)
    finally:
        geo.close()


def render_html(config: Config, data: ReportData, template: str = REPORT_TEMPLATE) -> str:
    """The report rendered through the (possibly user-overridden) templates."""
    try:
        return render(data, template, _template_dir(config))
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None


def _write_text(out: Path, text: str) -> None:
    """Write text to out atomically."""
    with output_text(out) as handle:
        handle.write(text)


def write_report(
    store: Store,
    config: Config,
    fmt: str,
    since: datetime,
    until: datetime,
    out: Path,
    bom: bool = False,
) -> Path:
    """Render the report of [since, until) as fmt (html, csv or json) to out; return out.

    csv writes the findings to out and the changes beside it ("<stem>-changes.csv").
    """
    if fmt not in REPORT_FORMATS:
        raise UsageError(f"unknown report format {fmt!r}: choose html, csv or json")
    if since >= until:
        raise UsageError(f"the report period is empty: {since:%Y-%m-%d} is not before {until}")
    if fmt == "csv" and out == STDOUT:
        raise UsageError(
            "report --format csv writes two files and cannot go to -: give -o PATH,"
            " or see `rolecall changes --format csv`"
        )
    if fmt == "html":
        _write_text(out, render_html(config, report_data(store, config, since, until)))
    elif fmt == "json":
        with store.read("read the report's data") as connection, output_text(out) as handle:
            write_json(connection, since, until, handle)
    else:
        with (
            store.read("read the report's data") as connection,
            output_text(out) as findings,
            output_text(changes_path(out)) as changes,
        ):
            write_csv(connection, since, until, findings, changes, bom)
    return out


def _subject(data: ReportData, since: datetime, until: datetime) -> str:
    """The subject: the period and the count of new findings."""
    last = until - timedelta(microseconds=1)
    return (
        f"rolecall report {since:%Y-%m-%d} to {last:%Y-%m-%d}:"
        f" {data.new_findings} new finding{'s' if data.new_findings != 1 else ''}"
    )


def _keep(
    store: Store, config: Config, data: ReportData, since: datetime, until: datetime, folder: Path
) -> list[Attachment]:
    """Write the HTML report and the CSV files to folder; return the CSVs as attachments."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot keep the report in {folder}: {exc.strerror or exc}") from None
    _write_text(folder / "report.html", render_html(config, data))
    write_report(store, config, "csv", since, until, folder / "findings.csv", bom=True)
    names = [folder / "findings.csv", changes_path(folder / "findings.csv")]
    return [Attachment(path.name, path.read_bytes()) for path in names]


def email_report(
    store: Store,
    config: Config,
    to: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EmailOutcome:
    """Render the report, keep it on disk, send it through the relay, and record the run."""
    recipients = list(to or config.email.to)
    if not recipients:
        raise UsageError("no recipients: pass --to or set email.to in the config")
    for recipient in recipients:
        if not _is_address(recipient):
            raise UsageError(f"{recipient!r} is not an email address (from --to or email.to)")
    if not config.email.host:
        raise UsageError("no relay configured: set email.host in the config")
    settings = relay_settings(config)
    if until is None:
        until = utcnow()
    if since is None:
        since = default_period(until)[0]
    with store.run(RUN_KIND, ",".join(recipients)) as run:
        run.counts["recipients"] = len(recipients)
        folder = Path(config.email.keep_dir) / f"report-{utcnow():%Y%m%dT%H%M%SZ}-run{run.id}"
        data = report_data(store, config, since, until)
        attachments = _keep(store, config, data, since, until, folder)
        subject = _subject(data, since, until)
        body = render_html(config, data, EMAIL_TEMPLATE)
        text = f"{subject}\n\nThe full report is attached as CSV and kept in {folder}.\n"
        message = build_message(subject, config.email.sender, recipients, text, body, attachments)
        try:
            send(settings, message, recipients)
        except DeliveryError as exc:
            raise RunError(f"{exc}; the report is kept in {folder}") from None
        run.counts["new_findings"] = data.new_findings
    return EmailOutcome(run.id, subject, tuple(recipients), data.new_findings, folder)
