"""The HTML report of real data in headless Chromium: no console errors, charts with points."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import run_cli
from tests.report_helpers import SINCE, UNTIL, build_inventory

CHROMIUM = shutil.which("chromium") or "chromium"


def chromium(page: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local page with console messages logged to stderr."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *action,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _chart_points(dom: str, name: str) -> int:
    """How many data points (circles or bars) one chart has in the rendered DOM."""
    start = dom.index(f'data-chart="{name}"')
    end = dom.index("</svg>", start)
    return len(re.findall(r'<(?:circle class="point"|rect class="bar")', dom[start:end]))


def test_report_renders_in_chromium_without_console_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "inventory.db"
    build_inventory(db).close()
    page = tmp_path / "report.html"
    period = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())
    result = run_cli(capsys, "--db", str(db), "report", *period, "-o", str(page))
    assert result.code == 0, result.err

    dumped = chromium(page, tmp_path / "profile", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = dumped.stdout
    assert _chart_points(dom, "smtp-clients") == 90
    assert _chart_points(dom, "smtp-connections") == 7
    assert _chart_points(dom, "mail-clients-by-group") >= 2
    # Hostile text reached the DOM as text, never as an element.
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;" in dom

    shot = tmp_path / "report.png"
    taken = chromium(page, tmp_path / "profile", "--window-size=412,2000", f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000


MEASURE = """
const frame = document.getElementById("page").contentWindow;
const doc = frame.document;
const right = frame.innerWidth + 0.5;
const sideways = [...doc.querySelectorAll("body *")]
  .filter((e) => !e.parentElement.closest(".table-wrap, svg"))
  .filter((e) => e.getBoundingClientRect().right > right)
  .map((e) => e.tagName + " " + e.textContent.slice(0, 40));
const scrolling = [...doc.querySelectorAll("pre")]
  .filter((e) => e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1)
  .map((e) => e.textContent.slice(0, 40));
const clipped = [];
for (const svg of doc.querySelectorAll("svg")) {
  const box = svg.viewBox.baseVal;
  for (const text of svg.querySelectorAll("text")) {
    const b = text.getBBox();
    if (b.x < box.x || b.y < box.y || b.x + b.width > box.width || b.y + b.height > box.height) {
      clipped.push(svg.dataset.chart + ": " + text.textContent);
    }
  }
}
const measured = {
  width: frame.innerWidth,
  scrollWidth: doc.documentElement.scrollWidth,
  sideways: sideways.slice(0, 10),
  scrolling: scrolling.slice(0, 10),
  clipped: clipped.slice(0, 10),
  navRows: new Set([...doc.querySelectorAll("nav a")].map((a) => a.offsetTop)).size,
};
document.body.setAttribute("data-measured", JSON.stringify(measured));
"""


def measure(page: Path, profile: Path, width: int) -> dict[str, Any]:
    """Lay the report out `width` CSS pixels wide in Chromium and measure what overflows.

    Headless Chromium's window is at least 500 pixels wide, so the report is laid out in
    an iframe of the width asked for, measured by a script of the page around it.
    """
    probe = page.with_name(f"probe-{width}.html")
    probe.write_text(
        '<!DOCTYPE html><html><body style="margin:0">'
        f'<iframe id="page" width="{width}" height="1200" style="border:0" '
        f'srcdoc="{html.escape(page.read_text(encoding="utf-8"), quote=True)}"></iframe>'
        f'<script>document.getElementById("page").onload = () => {{{MEASURE}}};</script>'
        "</body></html>",
        encoding="utf-8",
    )
    dumped = chromium(probe, profile, "--window-size=1400,1200", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'data-measured="([^"]*)"', dumped.stdout)
    assert found is not None, dumped.stdout[-2000:]
    measured: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return measured


@pytest.mark.parametrize("width", [1400, 400])
def test_report_fits_the_screen_without_clipping(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, width: int
) -> None:
    db = tmp_path / "inventory.db"
    build_inventory(db).close()
    page = tmp_path / "report.html"
    period = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())
    assert run_cli(capsys, "--db", str(db), "report", *period, "-o", str(page)).code == 0

    measured = measure(page, tmp_path / "profile", width)
    assert measured["width"] == width
    # Nothing reaches past the right edge: wide tables scroll inside their own box.
    assert measured["scrollWidth"] <= width, measured
    assert measured["sideways"] == [], measured
    # Evidence is shown whole, without a scrollbar of its own.
    assert measured["scrolling"] == [], measured
    # Every axis label lies inside its chart.
    assert measured["clipped"] == [], measured
    # The navigation wraps onto more rows on a phone.
    assert measured["navRows"] == 1 if width == 1400 else measured["navRows"] != 1, measured
