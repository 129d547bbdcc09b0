"""Reading everything one report shows from the inventory, for a period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from rolecall.inventory.changes import change_listings
from rolecall.inventory.exports import iso
from rolecall.inventory.groups import groups_of_addresses, mail_client_groups
from rolecall.inventory.history import DayPoint, daily_points
from rolecall.inventory.store import utcnow
from rolecall.reports import queries
from rolecall.reports.charts import BarChart, LineChart, SeriesPoint, bar_chart, line_chart
from rolecall.reports.clusters.view import (
    ClusterResult,
    cluster_mail,
    mail_columns,
    period_mail,
)
from rolecall.reports.geo import GeoLookup
from rolecall.reports.model import ChangesView, GroupHosts, ReportData

REPORT_CLUSTERS = (("subject", "rcpt"), ("src_org", "client"), ("src_prefix", "client"))
CLUSTERS_SHOWN = 25


@dataclass(frozen=True)
class ReportSettings:
    """How a report looks: its title and how many rows a table shows before summarising."""

    title: str = "rolecall report"
    row_limit: int = 500


def _last_day(until: datetime) -> datetime:
    """The last instant inside a half-open period ending at until."""
    return until - timedelta(microseconds=1)


def history_chart(
    connection: Connection, title: str, metric: str, days: int, until: datetime
) -> LineChart:
    """A chart of one history series over the days ending with the period's last day."""
    points = daily_points(connection, metric, days, _last_day(until).date())
    return day_chart(title, points)


def day_chart(title: str, points: Sequence[DayPoint], threshold: bool = False) -> LineChart:
    """A chart of a daily series with its baseline band (and its surge threshold if asked)."""
    series = [
        SeriesPoint(
            point.day,
            point.value,
            point.low,
            point.high,
            point.threshold if threshold else None,
            point.surge if threshold else False,
        )
        for point in points
    ]
    return line_chart(title, series)


def _group_section(connection: Connection, limit: int) -> tuple[BarChart, list[GroupHosts]]:
    """The email-clients-per-group bar chart and the host lists its bars link to."""
    counted = mail_client_groups(connection, limit)
    targets = [
        GroupHosts(f"group-{index}", item.group, item.addresses, item.count)
        for index, item in enumerate(counted, start=1)
    ]
    chart = bar_chart(
        "Email clients per asset group",
        [(target.group, target.count, f"#{target.anchor}") for target in targets],
    )
    return chart, targets


def _changes_view(
    connection: Connection, since: datetime, until: datetime, limit: int
) -> ChangesView:
    """The period's changes cut to the row limit, with whole counts (the rest is not read)."""
    listings = change_listings(since, until)
    new_assets = listings.new_assets.head(connection, limit)
    new_roles = listings.new_roles.head(connection, limit)
    lost_roles = listings.lost_roles.head(connection, limit)
    new_findings = listings.new_findings.head(connection, limit)
    resolved_findings = listings.resolved_findings.head(connection, limit)
    return ChangesView(
        new_assets.items,
        [f"{address} {role}" for address, role in new_roles.items],
        [f"{address} {role}" for address, role in lost_roles.items],
        queries.finding_items(connection, new_findings.items),
        queries.finding_items(connection, resolved_findings.items),
        {
            "new_assets": new_assets.total,
            "new_roles": new_roles.total,
            "lost_roles": lost_roles.total,
            "new_findings": new_findings.total,
            "resolved_findings": resolved_findings.total,
            "open_findings": listings.open_findings.count(connection),
        },
    )


def mail_clusters(
    connection: Connection, geo: GeoLookup, since: datetime, until: datetime
) -> list[ClusterResult]:
    """The report's mail clusters for the period: subjects by recipient, senders by network."""
    found = []
    read: dict[tuple[str, ...], list[Any]] = {}
    for field_name, on in REPORT_CLUSTERS:
        # Clusters on the same columns (the client's network, its organisation) share one read.
        columns = mail_columns((field_name, on))
        if columns not in read:
            read[columns] = list(period_mail(connection, (field_name, on), since, until))
        result = cluster_mail(
            connection, field_name, on, [], geo, rows=read[columns], most=CLUSTERS_SHOWN
        )
        shown = result.clusters[:CLUSTERS_SHOWN]
        found.append(ClusterResult(result.field, result.on, result.messages, shown))
    return found


def build_report(
    connection: Connection,
    settings: ReportSettings,
    since: datetime,
    until: datetime,
    geo: GeoLookup,
) -> ReportData:
    """Everything the report of [since, until) shows, read in one connection."""
    limit = settings.row_limit
    open_counts = queries.finding_counts(connection)
    findings = queries.open_findings(connection, limit)
    finding_groups = groups_of_addresses(connection, sorted({item.address for item in findings}))
    chart, targets = _group_section(connection, limit)
    generated = utcnow()
    return ReportData(
        title=settings.title,
        since=iso(since),
        # Nothing after the report was made is in it: a period reaching on ends there.
        until=iso(min(until, generated)),
        generated=iso(generated),
        assets=queries.count_assets(connection),
        roles=queries.role_counts(connection),
        groups=queries.group_counts(connection),
        open_by_severity=open_counts,
        changes=_changes_view(connection, since, until, limit),
        findings=findings,
        findings_total=sum(open_counts.values()),
        hosts=queries.host_details(connection, findings, finding_groups),
        clients_chart=history_chart(
            connection, "Distinct SMTP clients per day, 90 days", "smtp_clients", 90, until
        ),
        connections_chart=history_chart(
            connection,
            "SMTP connections per day (port 25 and every port SMTP was seen on), 7 days,"
            " with the baseline band",
            "smtp_connections",
            7,
            until,
        ),
        groups_chart=chart,
        group_hosts=targets,
        software=queries.mail_software(connection, since, until, limit),
        servers=queries.servers(connection, limit),
        clusters=mail_clusters(connection, geo, since, until),
        inventory=queries.inventory_page(connection, limit),
        row_limit=limit,
    )
