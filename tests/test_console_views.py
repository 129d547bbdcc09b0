"""The console's groups, charts, changes and mail-cluster pages, served for real over HTTP.

Each JSON twin must say what the matching CLI listing prints (`--format json`); each page
shows it (charts as SVG with their points), refuses bad parameters in one sentence and
escapes what came from the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rolecall.inventory import host_search, host_view
from rolecall.inventory.finding_pages import FindingQuery, finding_page
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import load_config
from rolecall.orchestrator.settings import derive_settings
from tests.cli_helpers import cli_json
from tests.console_helpers import console_client
from tests.report_helpers import HOSTILE, build_inventory

# The groups tests/report_helpers.py derives with, as a config declares them.
CONFIG = """
[scope]
allow = ["10.0.0.0/8", "192.168.0.0/16"]

[[groups]]
name = "servers"
networks = ["10.10.1.0/24"]

[[groups]]
name = "desks"
networks = ["192.168.0.0/16"]
"""
LAST_DAY = "2026-03-01"
PERIOD = {"since": "2026-02-22", "until": "2026-03-02"}


@dataclass(frozen=True)
class Console:
    """A served console over a built inventory, and the files the CLI reads the same from."""

    client: httpx.Client
    db: str
    config: Path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, module_database: str) -> Iterator[Console]:
    """The report inventory, derived with the config's groups, and a console serving it."""
    folder = tmp_path_factory.mktemp("console-views")
    path = folder / "rolecall.toml"
    path.write_text(CONFIG, encoding="utf-8")
    config, _ = load_config(path)
    db = module_database
    build_inventory(db).close()
    store = Store.open(db)
    try:
        # As the CLI would: derived with the config's settings, so neither derives again.
        store.derive(derive_settings(config))
        with console_client(config, store) as client:
            yield Console(client, db, path)
    finally:
        store.close()


def twin(console: Console, path: str, **params: Any) -> Any:
    """A JSON twin's answer, which must be a success."""
    response = console.client.get(f"/api{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def html(console: Console, path: str, **params: Any) -> str:
    """A page, which must be a success."""
    response = console.client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def refused(console: Console, path: str, **params: Any) -> str:
    """The one sentence a page and its twin answer a bad parameter with (HTTP 400)."""
    page = console.client.get(path, params=params)
    assert page.status_code == 400
    answer = console.client.get(f"/api{path}", params=params)
    assert answer.status_code == 400
    sentence: str = answer.json()["error"]
    assert "Traceback" not in page.text
    assert f'<p class="error">{sentence}</p>'.replace("'", "&#39;") in page.text
    return sentence


def test_groups_twin_is_groups_mail_clients_with_sizes(
    capsys: pytest.CaptureFixture[str], console: Console
) -> None:
    listed = cli_json(capsys, console.db, console.config, "groups", "mail-clients")
    groups = twin(console, "/groups")["groups"]
    with_clients = [
        {key: row[key] for key in ("group", "count", "addresses")} for row in groups if row["count"]
    ]
    assert with_clients == listed
    assert any(row["group"] == "servers" and row["count"] >= 9 for row in listed)
    by_name = {row["group"]: row for row in groups}
    # Every configured group is shown, mail clients or not, with how many hosts it holds.
    assert {"servers", "desks"} <= set(by_name)
    assert by_name["servers"]["members"] >= by_name["servers"]["count"]
    assert all(isinstance(row["members"], int) for row in groups)
    page = html(console, "/groups")
    assert '<a class="mono" href="/hosts/10.10.1.100">10.10.1.100</a>' in page
    assert f'<td class="num">{by_name["desks"]["members"]}</td>' in page
    assert '<a href="/charts?group=desks"' in page


@pytest.mark.parametrize("group", [None, "servers"])
def test_charts_twin_is_history_show(
    capsys: pytest.CaptureFixture[str], console: Console, group: str | None
) -> None:
    chosen = ["--group", group] if group else []
    params = {"until": LAST_DAY, **({"group": group} if group else {})}
    series = twin(console, "/charts", **params)["series"]
    for metric in ("smtp_clients", "smtp_connections"):
        shown = cli_json(
            capsys,
            console.db,
            console.config,
            "history",
            "show",
            metric,
            "--days",
            "90",
            "--until",
            LAST_DAY,
            *chosen,
        )
        assert series[metric] == shown
    clients = series["smtp_clients"]
    assert len(clients) == 90
    assert clients[-1]["value"] >= 9
    assert clients[-1]["threshold"] is not None
    # No firewall log was read: its series is left out rather than drawn flat.
    assert "fw_smtp_denies" not in series


def test_charts_page_draws_points_band_and_threshold(console: Console) -> None:
    page = html(console, "/charts", until=LAST_DAY, days="30")
    found = re.search(r'data-chart="smtp-clients" data-points="(\d+)"', page)
    assert found is not None
    assert found.group(1) == "30"
    clients = page[page.index('data-chart="smtp-clients"') : page.index("</svg>")]
    assert clients.count('<circle class="point') == 30
    assert '<polygon class="band"' in clients
    assert '<polyline class="threshold"' in clients
    assert f'data-day="{LAST_DAY}"' in clients
    assert 'data-chart="smtp-connections" data-points="30"' in page


def test_charts_page_marks_the_surge_days(console: Console) -> None:
    series = twin(console, "/charts", until=LAST_DAY)["series"]["smtp_connections"]
    surges = [point["day"] for point in series if point["surge"]]
    assert surges, "the connections ramp up in steps early in the 90 days"
    page = html(console, "/charts", until=LAST_DAY)
    drawn = page[page.index('data-chart="smtp-connections"') :]
    marked = re.findall(r'<circle class="point surge"[^>]* data-day="([0-9-]+)"', drawn)
    assert marked == surges
    for day in surges:
        assert f'<span class="surge-day">{day} (' in drawn


def test_charts_refuse_bad_parameters(console: Console) -> None:
    assert refused(console, "/charts", days="3") == "days: '3' is not a whole number from 7 to 3650"
    assert refused(console, "/charts", group="nobody") == (
        "group: 'nobody' is not one of desks, servers"
    )
    assert refused(console, "/charts", until="yesterday") == (
        "until: 'yesterday' is not a date (YYYY-MM-DD)"
    )


def test_changes_twin_is_rolecall_changes(
    capsys: pytest.CaptureFixture[str], console: Console
) -> None:
    listed = cli_json(
        capsys,
        console.db,
        console.config,
        "changes",
        "--since",
        PERIOD["since"],
        "--until",
        PERIOD["until"],
    )
    answer = twin(console, "/changes", **PERIOD)
    assert answer["changes"] == listed
    assert listed, "the week before the report's end has changes"
    assert answer["since"] == "2026-02-22T00:00:00.000000Z"
    assert sum(answer["counts"].values()) == len(listed)
    kind = listed[0]["change"]
    only = twin(console, "/changes", kind=kind, **PERIOD)["changes"]
    assert only == [row for row in listed if row["change"] == kind]
    page = html(console, "/changes", **PERIOD)
    address = listed[0]["address"]
    assert f'href="/hosts/{address}"' in page


def test_changes_refuse_bad_dates_and_empty_periods(console: Console) -> None:
    assert refused(console, "/changes", since="2026-02-30") == (
        "since: '2026-02-30' is not a date (YYYY-MM-DD)"
    )
    sentence = refused(console, "/changes", since="2026-03-02", until="2026-02-22")
    assert sentence.startswith("since 2026-03-02T00:00:00+00:00 is not before until")
    assert refused(console, "/changes", kind="moved", **PERIOD).startswith(
        "kind: 'moved' is not one of"
    )


@pytest.mark.parametrize(
    ("field", "on", "where"),
    [
        ("subject", "rcpt", ""),
        ("client", "subject", "rcpt ~ example.net and subject != 'report day 0'"),
    ],
)
def test_clusters_twin_is_mail_cluster(
    capsys: pytest.CaptureFixture[str], console: Console, field: str, on: str, where: str
) -> None:
    chosen = ["--where", where] if where else []
    listed = cli_json(
        capsys,
        console.db,
        console.config,
        "mail",
        "cluster",
        field,
        "--on",
        on,
        "--top",
        "5",
        *chosen,
    )
    answer = twin(console, "/clusters", field=field, on=on, where=where, limit="5")
    assert answer["clusters"] == listed
    assert listed
    assert answer["total_clusters"] >= len(listed)


def test_clusters_page_escapes_hostile_subjects(console: Console) -> None:
    page = html(console, "/clusters", field="subject", on="client", limit="1000")
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    # The senders of a subject link to their host pages.
    assert '<a class="mono" href="/hosts/8.8.8.8">8.8.8.8</a>' in page


def test_clusters_refuse_bad_expressions_and_fields(console: Console) -> None:
    assert refused(console, "/clusters", where="subject ~") == (
        "--where: expected FIELD OP VALUE (OP one of ==, =, !=, ~, !~) at 'subject ~'"
    )
    assert refused(console, "/clusters", where="colour = red").startswith(
        "--where: unknown field 'colour'; fields are "
    )
    assert refused(console, "/clusters", on="colour").startswith(
        "on: unknown field 'colour'; fields are "
    )
    assert refused(console, "/clusters", limit="0") == (
        "limit: '0' is not a whole number from 1 to 10000"
    )


def test_host_and_finding_lists_sort_as_python_does(console: Console) -> None:
    """Search, host page and findings pages: the same order on SQLite and PostgreSQL."""
    store = Store.open(console.db)
    try:
        with store.read("read the host lists") as connection:
            named = [(h.name, h.address) for h in host_search.by_hostname(connection, ".", 50).rows]
            senders = host_search.by_subject(connection, "report", 50).rows
            names = host_view.names(connection, "10.10.1.100", 50).rows
            query = FindingQuery(status=None, sort="address", descending=False)
            whole = finding_page(connection, query, 0, 1000)
            pages = [finding_page(connection, query, start, 3).rows for start in (0, 3, 6)]
    finally:
        store.close()
    assert len(named) > 1
    assert named == sorted(named)
    assert [(-c.count, c.value) for c in senders] == sorted((-c.count, c.value) for c in senders)
    assert len(senders) > 1
    assert [n.name for n in names] == sorted(n.name for n in names)
    keys = [(f.address, f.rule) for f in whole.rows]
    assert len(keys) > 9
    assert keys == sorted(keys)
    assert [f.id for page in pages for f in page] == [f.id for f in whole.rows[:9]]
