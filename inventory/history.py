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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, case, delete, func, select

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
PASS_DAYS: Final = 31
"""Days recomputed from one read of the evidence: a full derivation's days take a few reads
rather than three queries each, and what one read holds stays bounded."""
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


@dataclass
class _DaySeries:
    """One day's raw series: its SMTP clients, and its SMTP connections and firewall
    denies by client."""

    clients: set[str] = field(default_factory=set)
    connections: Counter[str] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)


def _passes(days: Sequence[date]) -> Iterator[list[date]]:
    """Sorted days in runs that span at most PASS_DAYS days each."""
    run: list[date] = []
    for day in days:
        if run and (day - run[0]).days >= PASS_DAYS:
            yield run
            run = []
        run.append(day)
    if run:
        yield run


def _read_mail(
    connection: Connection, found: dict[date, _DaySeries], first: date, last: date
) -> set[tuple[date, str, int]]:
    """Each day's SMTP clients into found (a proxy relaying a client's mail is not one);
    return the (day, server, port) that mail went to."""
    smtp = SMTP_TABLE
    start = datetime.combine(first, time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    rows = connection.execute(
        select(
            smtp.c.ts, smtp.c.client, smtp.c.server, smtp.c.server_port, smtp.c.relayed_for
        ).where(smtp.c.ts >= start, smtp.c.ts < end)
    )
    spoke: set[tuple[date, str, int]] = set()
    for ts, client, server, port, relayed_for in rows:
        day = ts.date()
        series = found.get(day)
        if series is not None:
            spoke.add((day, server, port))
            if relayed_for == "":
                series.clients.add(client)
    return spoke


def _read_connections(
    connection: Connection,
    found: dict[date, _DaySeries],
    first: date,
    last: date,
    spoke: set[tuple[date, str, int]],
) -> None:
    """Each day's TCP connections into found, by client: to port 25 and to every server port
    SMTP was seen on (that day's mail, or a service speaking SMTP); and those the firewall
    denied going out to SMTP ports.

    The firewall reader writes a day's denied connections as flows and marks each (host,
    port, destination) it denied with an fw-smtp-deny fact; the flows keep the days.
    """
    flow, obs, service = FLOW_TABLE, OBSERVATION_TABLE, SERVICE_TABLE
    services = {
        (row.address, row.port)
        for row in connection.execute(
            select(service.c.address, service.c.port).where(
                service.c.transport == "tcp", service.c.protocol == "smtp"
            )
        )
    }
    smtp_ports = set(SMTP_PORTS)
    ports = smtp_ports | set(FIREWALL_SMTP_PORTS) | {port for _, port in services}
    ports |= {port for _, _, port in spoke}
    marked = (
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
    denied = case(
        (
            and_(flow.c.source == "firewall", flow.c.server_port.in_(FIREWALL_SMTP_PORTS)),
            marked,
        ),
        else_=False,
    )
    # One read of the days' flows serves both series (the day index finds them).
    rows = connection.execute(
        select(
            flow.c.day, flow.c.client, flow.c.server, flow.c.server_port, flow.c.connections, denied
        ).where(
            flow.c.day >= first,
            flow.c.day <= last,
            flow.c.transport == "tcp",
            flow.c.server_port.in_(sorted(ports)),
        )
    )
    for day, client, server, port, count, was_denied in rows:
        series = found.get(day)
        if series is None:
            continue
        if port in smtp_ports or (server, port) in services or (day, server, port) in spoke:
            series.connections[client] += count
        if was_denied:
            series.denied[client] += count


def _read_days(connection: Connection, days: list[date]) -> dict[date, _DaySeries]:
    """The raw series of these days (sorted, spanning at most PASS_DAYS), from one read."""
    found = {day: _DaySeries() for day in days}
    spoke = _read_mail(connection, found, days[0], days[-1])
    _read_connections(connection, found, days[0], days[-1], spoke)
    return found


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
    for run in _passes(sorted(set(days))):
        for day, series in _read_days(connection, run).items():
            _write_series(connection, day, series, groups)


def _write_series(
    connection: Connection,
    day: date,
    series: _DaySeries,
    groups: Mapping[str, list[str]] | None,
) -> None:
    """Store one day's series, network-wide and per group."""
    clients, by_client, denied = series.clients, series.connections, series.denied
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
