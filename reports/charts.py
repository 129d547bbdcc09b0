"""Chart geometry for inline SVG: the templates draw what these functions lay out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 640
HEIGHT = 220
# Room for the axis labels: numbers left of the plot, and half a date label right of its last day.
LEFT, RIGHT, TOP, BOTTOM = 44, 28, 12, 28


@dataclass(frozen=True)
class SeriesPoint:
    """One day of a series, with its baseline band when there is one."""

    day: date
    value: float
    low: float | None = None
    high: float | None = None
    threshold: float | None = None
    """The least value that is a surge that day, when the chart shows it."""
    surge: bool = False


@dataclass(frozen=True)
class PlotPoint:
    """A point placed on the chart."""

    x: float
    y: float
    day: str
    value: str
    surge: bool = False


@dataclass(frozen=True)
class Tick:
    """An axis label at a position."""

    at: float
    label: str


@dataclass(frozen=True)
class LineChart:
    """A daily line with an optional baseline band, in SVG coordinates."""

    title: str
    width: int
    height: int
    points: list[PlotPoint]
    line: str
    band: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    baseline: float
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    threshold: str = ""
    """The surge threshold as polyline points ("" when the chart has none)."""


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart, linking to the hosts it counts."""

    label: str
    value: int
    y: float
    length: float
    href: str


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one per label, in SVG coordinates."""

    title: str
    width: int
    height: int
    bars: list[Bar]
    label_width: int


def _number(value: float) -> str:
    """A count as short text: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _scale_top(values: Sequence[float]) -> float:
    """A round upper bound for the y axis (at least 1)."""
    top = max([1.0, *values])
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 5, 10):
        if top <= step * magnitude:
            return float(step * magnitude)
    return top


def line_chart(title: str, series: Sequence[SeriesPoint]) -> LineChart:
    """Lay out a daily series (and its band) across the chart's width."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    highs = [p.high for p in series if p.high is not None]
    thresholds = [p.threshold for p in series if p.threshold is not None]
    top = _scale_top([p.value for p in series] + highs + thresholds)
    step = plot_w / max(len(series) - 1, 1)

    def y_of(value: float) -> float:
        return round(TOP + plot_h - plot_h * value / top, 1)

    points = [
        PlotPoint(
            round(LEFT + index * step, 1),
            y_of(p.value),
            p.day.isoformat(),
            _number(p.value),
            p.surge,
        )
        for index, p in enumerate(series)
    ]
    threshold = " ".join(
        f"{point.x},{y_of(p.threshold)}"
        for point, p in zip(points, series, strict=True)
        if p.threshold is not None
    )
    banded = [(point, p) for point, p in zip(points, series, strict=True) if p.low is not None]
    band = ""
    if banded:
        upper = [
            f"{point.x},{y_of(p.high if p.high is not None else p.value)}" for point, p in banded
        ]
        lower = [f"{point.x},{y_of(p.low or 0.0)}" for point, p in reversed(banded)]
        band = " ".join(upper + lower)
    every = max(1, math.ceil(len(series) / 6))
    x_ticks = [Tick(point.x, point.day[5:]) for point in points[::every]]
    y_ticks = [Tick(y_of(top * share), _number(top * share)) for share in (0, 0.5, 1)]
    return LineChart(
        title,
        WIDTH,
        HEIGHT,
        points,
        " ".join(f"{point.x},{point.y}" for point in points),
        band,
        y_ticks,
        x_ticks,
        float(TOP + plot_h),
        threshold=threshold,
    )


def bar_chart(title: str, bars: Sequence[tuple[str, int, str]]) -> BarChart:
    """Lay out (label, value, link) bars, longest first, scaled to the largest."""
    label_width = 160
    row = 24
    top = max([1, *(value for _, value, _ in bars)])
    plot_w = WIDTH - label_width - 60
    ordered = sorted(bars, key=lambda bar: (-bar[1], bar[0]))
    placed = [
        Bar(label, value, float(8 + index * row), round(plot_w * value / top, 1), href)
        for index, (label, value, href) in enumerate(ordered)
    ]
    return BarChart(title, WIDTH, 16 + row * max(len(placed), 1), placed, label_width)
