"""The charts page and its JSON twin: the report's daily series, baseline and surge threshold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rolecall.console import parameters
from rolecall.console.context import context_of
from rolecall.console.responses import api, page
from rolecall.inventory.history import daily_points, point_row
from rolecall.orchestrator.settings import surge_settings
from rolecall.reports.build import day_chart
from rolecall.reports.charts import LineChart

CHARTS: Final = (
    ("smtp_clients", "Distinct SMTP clients per day"),
    ("smtp_connections", "SMTP connections per day (port 25 and every port SMTP was seen on)"),
    ("fw_smtp_denies", "Outbound SMTP the firewall denied per day"),
)
SHOWN_WHEN_EMPTY: Final = ("smtp_clients", "smtp_connections")
"""The series charted even when all zero; the firewall's only when it denied something."""


def _read(request: Request) -> tuple[dict[str, Any], list[tuple[str, LineChart]]]:
    """Each series' days (as `history show --format json` prints them), and its chart.

    Parameters: days (7..3650, default 90), until (the last day, default today),
    group (one configured group's series).
    """
    context = context_of(request)
    days = parameters.number(request, "days", 90, 7, 3650)
    last = (parameters.day(request, "until") or datetime.now(UTC)).date()
    names = [entry.name for entry in context.config.groups]
    group = parameters.choice(request, "group", names) or None
    surge = surge_settings(context.config)
    series: dict[str, list[dict[str, Any]]] = {}
    charts: list[tuple[str, LineChart]] = []
    with context.read("read the daily series") as connection:
        for metric, title in CHARTS:
            points = daily_points(connection, metric, days, last, group, surge)
            if metric not in SHOWN_WHEN_EMPTY and not any(point.value for point in points):
                continue
            series[metric] = [point_row(metric, group, point) for point in points]
            shown = f"{title}, {days} days" + (f", group {group}" if group else "")
            charts.append((metric, day_chart(shown, points, threshold=True)))
    data = {"days": days, "until": last, "group": group, "groups": names, "series": series}
    return data, charts


def charts_page(request: Request) -> Response:
    """The charts, drawn with the report's line chart."""
    data, charts = _read(request)
    return page(request, "charts.html.j2", {**data, "charts": charts})


def charts_api(request: Request) -> Response:
    """The charts' JSON twin: the series' days with baseline, threshold and surge (no drawing)."""
    data, _charts = _read(request)
    return api(data)


# Not twin_routes: the page draws the charts, which the twin leaves out.
ROUTES: list[BaseRoute] = [
    Route("/charts", charts_page, methods=["GET"], name="charts"),
    Route("/api/charts", charts_api, methods=["GET"], name="api-charts"),
]
