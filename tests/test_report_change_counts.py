"""The report's changes: the first rows of each list in order, and counts of the whole lists."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rolecall.inventory.changes import Changes, changes_between
from rolecall.inventory.findings import Raised, resolve, store_raised
from rolecall.inventory.store import Store
from rolecall.probes.records import Flow
from rolecall.reports.build import ReportSettings, build_report
from rolecall.reports.geo import GeoLookup
from rolecall.reports.model import ChangesView
from tests.cli_helpers import run_cli
from tests.report_helpers import SINCE, UNTIL

LIMIT = 10  # the smallest report.html_rows the config takes
NEW_HOSTS = [f"10.20.0.{index}" for index in range(1, 15)]
OLD_HOSTS = [f"10.30.0.{index}" for index in range(1, 13)]
CLIENT = "10.40.0.1"


def _answered(server: str, port: int, when: datetime) -> Flow:
    """A day's answered TCP flow to a server port (its server plays the port's role)."""
    return Flow(CLIENT, server, port, "tcp", when.date(), "pcap", when, when, answered=True)


def _fill(db: str) -> None:
    """New hosts, old hosts no longer seen serving SSH, and findings opened and resolved."""
    seen, old = UNTIL - timedelta(days=1), SINCE - timedelta(days=2)
    store = Store.open(db)
    with store.writer() as writer:
        for address in OLD_HOSTS:
            writer.add(_answered(address, 22, old))
        for address in [*NEW_HOSTS, *OLD_HOSTS]:
            writer.add(_answered(address, 80, seen))
    store.derive()
    raised = [
        Raised(rule, address, "medium", f"{rule} on {address}", seen, seen)
        for rule in ("rule-b", "rule-a", "Rule-c")
        for address in [*NEW_HOSTS, *OLD_HOSTS]
    ]
    with store.transaction("raise findings") as connection:
        store_raised(connection, raised, replace=False)
        resolve(connection, "rule-b", OLD_HOSTS)
    store.close()


def _read(db: str) -> tuple[Changes, ChangesView]:
    """Every change of the period, and the report's changes cut to LIMIT rows."""
    store, geo = Store.open(db), GeoLookup()
    with store.read("compare the changes") as connection:
        full = changes_between(connection, SINCE, UNTIL)
        shown = build_report(connection, ReportSettings(row_limit=LIMIT), SINCE, UNTIL, geo)
    geo.close()
    store.close()
    return full, shown.changes


def test_report_shows_the_first_rows_and_counts_the_whole_lists(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    _fill(database)
    full, shown = _read(database)
    lists = ("new_assets", "new_roles", "lost_roles", "new_findings", "resolved_findings")
    assert all(len(getattr(full, name)) > LIMIT for name in (*lists, "open_findings"))
    assert shown.counts == {name: len(getattr(full, name)) for name in (*lists, "open_findings")}
    assert shown.new_assets == full.new_assets[:LIMIT]
    assert shown.new_roles == [f"{address} {role}" for address, role in full.new_roles[:LIMIT]]
    assert shown.lost_roles == [f"{address} {role}" for address, role in full.lost_roles[:LIMIT]]
    for cut, whole in (
        (shown.new_findings, full.new_findings),
        (shown.resolved_findings, full.resolved_findings),
    ):
        assert [(item.rule, item.address) for item in cut] == [
            (found.rule, found.address) for found in whole[:LIMIT]
        ]
    # Code point order: "Rule-c" before "rule-a", whatever the database's collation.
    assert shown.new_findings[0].rule == "Rule-c"

    config = tmp_path / "rolecall.toml"
    config.write_text(f"[report]\nhtml_rows = {LIMIT}\n", encoding="utf-8")
    out = tmp_path / "report.html"
    period = ("--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat())
    args = ("--db", database, "--config", str(config), "report", *period, "-o", str(out))
    assert run_cli(capsys, *args).code == 0
    html = out.read_text(encoding="utf-8")
    assert f"<li>{len(full.new_assets)} new assets: " in html
    assert f"<li>{len(full.lost_roles)} roles no longer seen: " in html
    assert f"{len(full.new_findings)} new findings, {len(full.resolved_findings)} resolved" in html
