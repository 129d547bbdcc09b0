"""Daily history series kept in the store, and their robust baselines (median and MAD).

Series: ``smtp_clients`` (distinct hosts sending SMTP that day; a proxy whose only mail
that day is what it relayed for its clients is not one of them: each client is),
``smtp_connections`` (TCP connections that day, from flows, to port 25 and to every
server port where SMTP was seen: that day's mail sessions, or a service found speaking
SMTP; a message tunnelled through a proxy is one connection, the proxy's own, since the
client's connection goes to the proxy's port) and
``fw_smtp_denies`` (outbound SMTP the firewall denied that day). Each is kept
network-wide (group "") and per group.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, delete, func, or_, select, tuple_, union

from rolecall.inventory.groups import groups_of_addresses
from rolecall.inventory.settings import SurgeSettings
from rolecall.inventory.tables import (
    DAILY_METRIC_TABLE,
    FLOW_TABLE,
    OBSERVATION_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
)
from rolecall.inventory.vocabulary import METRICS

SMTP_PORTS: Final = (25,)
FIREWALL_SMTP_PORTS: Final = (25, 465, 587)
MAD_SCALE: Final = 1.4826
"""MAD times this estimates a normal standard deviation."""


@dataclass(frozen=True)
class DayPoint:
    """One day of a series with its baseline band (None while too little history)."""

    day: date
    value: int
    median: float | None
    low: float | None
    high: float | None
    mad: float | None = None
    baseline_days: int = 0
    threshold: int | None = None
    """The least value that is a surge on this day (see surge_threshold)."""

    @property
    def surge(self) -> bool:
        """Whether the day's value reaches its threshold."""
        return self.threshold is not None and self.value >= self.threshold


@dataclass(frozen=True)
class Band:
    """A baseline: the median of trailing days, their MAD, and the band it allows."""

    median: float
    mad: float
    low: float
    high: float
    days: int


def point_row(metric: str, group: str | None, point: DayPoint) -> dict[str, Any]:
    """One day of a series as a JSON object: numbers stay numbers, none is null."""
    return {
        "metric": metric,
        "group": group,
        "day": point.day.isoformat(),
        "value": point.value,
        "baseline_days": point.baseline_days,
        "median": point.median,
        "mad": point.mad,
        "low": point.low,
        "high": point.high,
        "threshold": point.threshold,
        "surge": point.surge,
    }


def baseline_band(values: Sequence[int], surge: SurgeSettings) -> Band | None:
    """The band of trailing values (None if fewer than surge.min_baseline_days of them)."""
    if len(values) < surge.min_baseline_days:
        return None
    median = float(statistics.median(values))
    mad = float(statistics.median(abs(value - median) for value in values))
    # A floor of one keeps a perfectly flat history from flagging a change of one.
    spread = max(mad * MAD_SCALE, 1.0) * surge.threshold_mads
    return Band(median, mad, max(0.0, median - spread), median + spread, len(values))


def surge_threshold(band: Band, surge: SurgeSettings) -> int:
    """The least daily count that is a surge: above the band and min_increase over the median.

    The smtp-client-surge rule's test (value > high and value - median >= min_increase)
    on whole counts.
    """
    return max(math.floor(band.high) + 1, math.ceil(band.median + surge.min_increase))


def _first_day(connection: Connection, metric: str, group: str) -> date | None:
    """The first day a series has a stored value."""
    table = DAILY_METRIC_TABLE
    first: date | None = connection.execute(
        select(func.min(table.c.day)).where(table.c.metric == metric, table.c.grp == group)
    ).scalar()
    return first


def stored_values(
    connection: Connection, metric: str, group: str, start: date, end: date
) -> dict[date, int]:
    """Stored values of a series for start <= day <= end (missing days are zero)."""
    table = DAILY_METRIC_TABLE
    rows = connection.execute(
        select(table.c.day, table.c.value).where(
            table.c.metric == metric,
            table.c.grp == group,
            table.c.day >= start,
            table.c.day <= end,
        )
    )
    return {row.day: row.value for row in rows}


def daily_points(
    connection: Connection,
    metric: str,
    days: int,
    until: date,
    group: str | None = None,
    surge: SurgeSettings | None = None,
) -> list[DayPoint]:
    """One point per day for the `days` days ending `until` (zero-filled), each with its band."""
    if metric not in METRICS:
        raise ValueError(f"unknown history metric {metric!r}; one of {', '.join(METRICS)}")
    surge = surge or SurgeSettings()
    grp = group or ""
    start = until - timedelta(days=days - 1)
    values = stored_values(
        connection, metric, grp, start - timedelta(days=surge.baseline_days), until
    )
    first = _first_day(connection, metric, grp)
    points = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        band = None
        if first is not None:
            trailing = [
                values.get(day - timedelta(days=back), 0)
                for back in range(1, surge.baseline_days + 1)
                if day - timedelta(days=back) >= first
            ]
            band = baseline_band(trailing, surge)
        points.append(
            DayPoint(
                day,
                values.get(day, 0),
                band.median if band else None,
                band.low if band else None,
                band.high if band else None,
                band.mad if band else None,
                band.days if band else 0,
                surge_threshold(band, surge) if band else None,
            )
        )
    return points


def _day_span(day: date) -> tuple[datetime, datetime]:
    """The UTC start of a day and of the next one."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _smtp_clients(connection: Connection, day: date) -> set[str]:
    """Distinct hosts that sent SMTP on a day (a proxy relaying a client's mail is not one)."""
    smtp = SMTP_TABLE
    start, end = _day_span(day)
    rows = connection.execute(
        select(smtp.c.client)
        .distinct()
        .where(and_(smtp.c.ts >= start, smtp.c.ts < end, smtp.c.relayed_for == ""))
    )
    return {row.client for row in rows}


def _smtp_connections(connection: Connection, day: date) -> Counter[str]:
    """Connections on a day to port 25 and to every server port SMTP was seen on, by client."""
    flow, smtp, service = FLOW_TABLE, SMTP_TABLE, SERVICE_TABLE
    start, end = _day_span(day)
    # A relay on 2525 or 8025 carries mail as much as one on 25 does.
    spoke_smtp = union(
        select(smtp.c.server, smtp.c.server_port).where(smtp.c.ts >= start, smtp.c.ts < end),
        select(service.c.address, service.c.port).where(
            service.c.transport == "tcp", service.c.protocol == "smtp"
        ),
    )
    rows = connection.execute(
        select(flow.c.client, func.sum(flow.c.connections))
        .where(
            flow.c.day == day,
            flow.c.transport == "tcp",
            or_(
                flow.c.server_port.in_(SMTP_PORTS),
                tuple_(flow.c.server, flow.c.server_port).in_(spoke_smtp),
            ),
        )
        .group_by(flow.c.client)
    )
    return Counter({row[0]: int(row[1]) for row in rows})


def _denies(connection: Connection, day: date) -> Counter[str]:
    """Outbound SMTP connections the firewall denied on a day, by inside host.

    The firewall reader writes a day's denied connections as flows and marks each
    (host, port, destination) it denied with an fw-smtp-deny fact; the flows keep the days.
    """
    flow, obs = FLOW_TABLE, OBSERVATION_TABLE
    denied = (
        select(obs.c.id)
        .where(
            obs.c.address == flow.c.client,
            obs.c.kind == "fw-smtp-deny",
            obs.c.source == "firewall",
            obs.c.port == flow.c.server_port,
            obs.c.transport == "tcp",
            obs.c.value == flow.c.server,
        )
        .exists()
    )
    rows = connection.execute(
        select(flow.c.client, func.sum(flow.c.connections))
        .where(
            flow.c.day == day,
            flow.c.source == "firewall",
            flow.c.transport == "tcp",
            flow.c.server_port.in_(FIREWALL_SMTP_PORTS),
            denied,
        )
        .group_by(flow.c.client)
    )
    return Counter({row[0]: int(row[1]) for row in rows})


def _write_day(connection: Connection, metric: str, day: date, values: Mapping[str, int]) -> None:
    """Replace one day of one metric, for every group at once."""
    table = DAILY_METRIC_TABLE
    connection.execute(delete(table).where(table.c.metric == metric, table.c.day == day))
    rows = [
        {"metric": metric, "grp": grp, "day": day, "value": value}
        for grp, value in values.items()
        if value or grp == ""
    ]
    connection.execute(table.insert(), rows)


def recompute_days(
    connection: Connection, days: Iterable[date], groups: Mapping[str, list[str]] | None
) -> None:
    """Recompute every series on the given days.

    ``groups``: every host's groups, or None to read those of each day's hosts.
    """
    for day in sorted(set(days)):
        clients = _smtp_clients(connection, day)
        by_client = _smtp_connections(connection, day)
        denied = _denies(connection, day)
        known = groups
        if known is None:
            known = groups_of_addresses(connection, sorted(clients | set(by_client) | set(denied)))
        per_group: Counter[str] = Counter({"": len(clients)})
        for client in clients:
            per_group.update(known.get(client, ()))
        _write_day(connection, "smtp_clients", day, per_group)
        totals: Counter[str] = Counter({"": sum(by_client.values())})
        for client, count in by_client.items():
            for name in known.get(client, ()):
                totals[name] += count
        _write_day(connection, "smtp_connections", day, totals)
        per_group = Counter({"": sum(denied.values())})
        for client, count in denied.items():
            for name in known.get(client, ()):
                per_group[name] += count
        _write_day(connection, "fw_smtp_denies", day, per_group)


def newest_day(connection: Connection) -> list[date]:
    """The newest day any series holds (an empty list if none)."""
    newest: date | None = connection.execute(select(func.max(DAILY_METRIC_TABLE.c.day))).scalar()
    return [] if newest is None else [newest]


def expire(connection: Connection, newest: date, retention_days: int) -> None:
    """Drop series days older than the retention window before the newest day."""
    table = DAILY_METRIC_TABLE
    connection.execute(delete(table).where(table.c.day < newest - timedelta(days=retention_days)))
