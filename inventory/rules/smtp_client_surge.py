"""smtp-client-surge: distinct SMTP clients per day well above their robust baseline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, func, select

from rolecall.inventory.findings import Raised
from rolecall.inventory.history import Band, baseline_band
from rolecall.inventory.rules.base import Rule, RuleContext, SeriesVerdict
from rolecall.inventory.settings import SurgeSettings
from rolecall.inventory.tables import DAILY_METRIC_TABLE

NAME = "smtp-client-surge"
SEVERITY = "medium"
METRIC = "smtp_clients"


def target(group: str) -> str:
    """The finding address of a series: "*" network-wide, "group:NAME" for a group."""
    return f"group:{group}" if group else "*"


def _series(
    connection: Connection, group: str, start: date, end: date
) -> tuple[dict[date, int], date | None]:
    """Day -> value for start..end, and the series' first day."""
    table = DAILY_METRIC_TABLE
    mine = (table.c.metric == METRIC, table.c.grp == group)
    rows = connection.execute(
        select(table.c.day, table.c.value).where(*mine, table.c.day >= start, table.c.day <= end)
    )
    first: date | None = connection.execute(select(func.min(table.c.day)).where(*mine)).scalar()
    return {row.day: row.value for row in rows}, first


def _summary(group: str, day: date, value: int, band: Band, surge: SurgeSettings) -> str:
    """One sentence: today's value, the baseline and the threshold that it crossed."""
    where = f"in group {group}" if group else "network-wide"
    return (
        f"{value} distinct SMTP clients {where} on {day.isoformat()}, against a baseline median"
        f" of {band.median:g} (MAD {band.mad:g}) over the previous {band.days} days;"
        f" more than {band.high:.0f} is a surge (median + {surge.threshold_mads:g} x 1.4826 x MAD,"
        " at least 1)."
    )


def judge_days(ctx: RuleContext, days: Sequence[date]) -> SeriesVerdict:
    """Surges on the given days for each series; and (series, day) calm on the last of them."""
    wanted = sorted(set(days))
    if not wanted:
        return SeriesVerdict()
    surge = ctx.settings.surge
    raised: list[Raised] = []
    calm: list[tuple[str, date]] = []
    for group in ["", *sorted({spec.name for spec in ctx.settings.groups})]:
        start = wanted[0] - timedelta(days=surge.baseline_days)
        values, first = _series(ctx.connection, group, start, wanted[-1])
        surging = False
        for day in wanted:
            trailing = [
                values.get(day - timedelta(days=back), 0)
                for back in range(1, surge.baseline_days + 1)
                if first is not None and day - timedelta(days=back) >= first
            ]
            band = baseline_band(trailing, surge)
            value = values.get(day, 0)
            surging = (
                band is not None and value > band.high and value - band.median >= surge.min_increase
            )
            if band is not None and surging:
                when = datetime.combine(day, time(), tzinfo=UTC)
                raised.append(
                    Raised(
                        NAME,
                        target(group),
                        SEVERITY,
                        _summary(group, day, value, band, surge),
                        when,
                        when,
                        [f"daily_metric:{METRIC}/{group or '*'}/{day.isoformat()}"],
                    )
                )
        if not surging:
            calm.append((target(group), wanted[-1]))
    return SeriesVerdict(raised, calm)


RULE = Rule(NAME, SEVERITY, series=judge_days)
