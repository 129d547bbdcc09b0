"""The HTML report of real evidence: sections, charts with their points, escaping, templates."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.probes.records import Service
from tests.cli_helpers import run_cli
from tests.report_helpers import SINCE, UNTIL

PERIOD = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())


def _report(capsys: pytest.CaptureFixture[str], db: str, out: Path, *extra: str) -> str:
    """Write the HTML report and return its text."""
    result = run_cli(capsys, "--db", str(db), *extra, "report", *PERIOD, "-o", str(out))
    assert result.code == 0, result.err
    return out.read_text(encoding="utf-8")


def test_report_has_every_section_and_real_evidence(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    html = _report(capsys, report_database, tmp_path / "report.html")
    for section in ("summary", "findings", "charts", "software", "mail-clusters", "servers"):
        assert f'<section id="{section}">' in html
    assert 'id="host-10.10.1.100"' in html
    # Evidence references are read back from the smtp table, not shown as ids.
    assert "mail 10.10.1.100 -&gt; 203.0.113.25:25" in html
    # The Bat! is shown with where it was used; the conformance capture's Outlook too.
    assert "The Bat! (v9.1)" in html
    assert "Microsoft Office Outlook 12.0" in html
    assert "Email clients in servers" in html
    # The SOCKS proxies the conformance captures show are listed.
    assert "192.168.0.1" in html


def test_charts_carry_one_point_per_day_and_the_band(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    html = _report(capsys, report_database, tmp_path / "report.html")
    clients = re.search(r'data-chart="smtp-clients" data-points="(\d+)"', html)
    connections = re.search(r'data-chart="smtp-connections" data-points="(\d+)"', html)
    assert clients is not None
    assert clients.group(1) == "90"
    assert connections is not None
    assert connections.group(1) == "7"
    # The period's last day: 1 + 89 // 10 = 9 inside clients plus the outside sender, and
    # 9 clients x 3 port-25 connections.
    assert 'data-day="2026-03-01" data-value="10"' in html
    assert 'data-day="2026-03-01" data-value="27"' in html
    assert '<polygon class="band"' in html
    assert re.search(r'<a href="#group-\d+" class="bar-link">', html)


def test_script_in_banner_subject_or_hostname_is_text(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    html = _report(capsys, report_database, tmp_path / "report.html")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_user_template_folder_overrides(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "report.html.j2").write_text(
        "<p>{{ report.assets }} assets, {{ report.hosts[0].hostnames|join }}</p>",
        encoding="utf-8",
    )
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[report]\ntemplate_dir = "{folder}"\n', encoding="utf-8")
    html = _report(capsys, report_database, tmp_path / "mine.html", "--config", str(config))
    assert re.fullmatch(r"<p>\d+ assets, .*&lt;script&gt;.*</p>\n?", html)


def test_broken_user_template_is_one_sentence(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "report.html.j2").write_text("{% for x in %}", encoding="utf-8")
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[report]\ntemplate_dir = "{folder}"\n', encoding="utf-8")
    result = run_cli(
        capsys,
        "--config",
        str(config),
        "--db",
        report_database,
        "report",
        *PERIOD,
        "-o",
        str(tmp_path / "x.html"),
    )
    assert result.code == 2
    assert result.err.startswith("rolecall: template ")
    assert "report.html.j2:1" in result.err
    assert not (tmp_path / "x.html").exists()


def test_missing_template_folder_names_the_config(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[report]\ntemplate_dir = "{tmp_path / "nowhere"}"\n', encoding="utf-8")
    result = run_cli(
        capsys, "--config", str(config), "--db", report_database, "report", *PERIOD,
        "-o", str(tmp_path / "x.html"),
    )  # fmt: skip
    assert result.code == 2
    assert result.err == (
        f"rolecall: {config}: report.template_dir: {tmp_path / 'nowhere'} is not a directory\n"
    )


def test_bad_period_is_usage_error(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    result = run_cli(capsys, "--db", report_database, "report", "--last", "seven")
    assert result.code == 2
    assert "--last" in result.err
    result = run_cli(capsys, "--db", report_database, "report", "--since", "2026-13-01")
    assert result.code == 2
    assert "--since" in result.err


def test_report_reads_no_more_than_the_row_limit(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    config = tmp_path / "rolecall.toml"
    config.write_text("[report]\nhtml_rows = 10\n", encoding="utf-8")
    html = _report(capsys, report_database, tmp_path / "r.html", "--config", str(config))
    store = Store.open(report_database)
    with store.read("read rows") as connection:
        assets = connection.exec_driver_sql("select count(*) from asset").scalar_one()
    store.close()
    assert f"Showing 10 of {assets} assets" in html


def test_a_service_is_listed_once_with_all_that_is_known(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    store = Store.open(report_database)
    seen = UNTIL - timedelta(hours=1)
    with store.writer() as writer:
        # Port discovery saw the port; a probe later learned what speaks on it.
        writer.add(Service("10.10.1.100", 8080, "tcp", "nmap", seen))
        writer.add(Service("10.10.1.100", 8080, "tcp", "probe", seen, "http", "nginx", "1.22.1"))
    store.close()
    html = _report(capsys, report_database, tmp_path / "report.html")
    services = re.search(r'id="host-10\.10\.1\.100">.*?<p>Services: ([^<]*)</p>', html, re.DOTALL)
    assert services is not None
    assert services.group(1).split("; ").count("8080/tcp http nginx 1.22.1") == 1
    assert "8080/tcp" not in services.group(1).split("; ")


def test_times_show_to_the_second_and_the_period_ends_by_generation(
    capsys: pytest.CaptureFixture[str], report_database: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    args = ("report", "--since", SINCE.date().isoformat(), "--until", "2099-01-01", "-o", str(out))
    assert run_cli(capsys, "--db", report_database, *args).code == 0
    html = out.read_text(encoding="utf-8")
    second = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    period = re.search(rf"Period ({second}) to ({second}) · generated ({second})", html)
    assert period is not None, html[:2000]
    assert period.group(2) == period.group(3)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+Z", html)
