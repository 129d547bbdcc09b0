"""The HTML report of real data in headless Chromium: no console errors, charts with points."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

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
