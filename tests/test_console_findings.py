"""The console's findings page over real HTTP: filters, paging, sorting, acknowledge, unack."""

from __future__ import annotations

import hashlib
import html
import ipaddress
import itertools
import json
import math
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from rolecall.inventory.findings import SEVERITIES, Raised, store_raised
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, load_config
from tests.alert_helpers import events
from tests.cli_helpers import cli_json, run_cli
from tests.console_helpers import console_client
from tests.report_helpers import HOSTILE, build_inventory

PAGE_SIZE = 10
READ_TOKEN = "read-only-token-for-the-findings-tests"
CONFIG = f"""
[scope]
allow = ["10.0.0.0/8", "192.168.0.0/16"]

[serve]
page_size = {PAGE_SIZE}

[[groups]]
name = "servers"
networks = ["10.10.1.0/24"]

[[groups]]
name = "desks"
networks = ["192.168.0.0/16"]
"""
READER = f"""
[[serve.tokens]]
name = "reader"
level = "read"
token_hash = "{hashlib.sha256(READ_TOKEN.encode()).hexdigest()}"
"""
"""A script's read-only token: with it configured, the console is no longer open to all."""
GROUP_NETWORKS = {"servers": "10.10.1.0/24", "desks": "192.168.0.0/16"}
HOSTILE_ADDRESS = "10.10.1.250" + HOSTILE
SOCKS = ("open-socks-proxy", "60.190.189.214")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A derived inventory (plus one finding of hostile text) and a config with its groups."""
    folder = tmp_path_factory.mktemp("console-findings")
    db, conf = folder / "inventory.db", folder / "rolecall.toml"
    conf.write_text(CONFIG)
    store = build_inventory(db)
    seen = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with store.transaction("add a hostile finding") as connection:
        store_raised(
            connection,
            [Raised("open-relay", HOSTILE_ADDRESS, "high", "relay " + HOSTILE, seen, seen)],
            replace=False,
        )
    store.close()
    return db, conf


def _config(conf: Path) -> Config:
    """The test config, loaded as the console loads it."""
    return load_config(conf)[0]


@pytest.fixture(scope="module")
def client(inventory: tuple[Path, Path]) -> Iterator[httpx.Client]:
    """A console serving the module's inventory (read-only tests share it)."""
    db, conf = inventory
    store = Store.open(str(db))
    with console_client(_config(conf), store) as http:
        yield http
    store.close()


@pytest.fixture
def own(inventory: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the module's inventory and config that a test may change."""
    db, conf = inventory
    copies = tmp_path / "inventory.db", tmp_path / "rolecall.toml"
    # SQLite's backup copies what is committed, the write-ahead log included.
    with sqlite3.connect(db) as source, sqlite3.connect(copies[0]) as target:
        source.backup(target)
    shutil.copy(conf, copies[1])
    return copies


@pytest.fixture
def cli_findings(
    capsys: pytest.CaptureFixture[str], inventory: tuple[Path, Path]
) -> list[dict[str, Any]]:
    """Every finding as `rolecall findings list --format json` gives it."""
    db, conf = inventory
    found: list[dict[str, Any]] = cli_json(capsys, db, conf, "findings", "list")
    return found


def all_pages(http: httpx.Client, **params: str) -> tuple[int, list[dict[str, Any]]]:
    """The total and every row of /api/findings with these parameters, page after page."""
    first = http.get("/api/findings", params=params)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["page_size"] == PAGE_SIZE
    assert body["pages"] == max(1, math.ceil(body["total"] / PAGE_SIZE))
    rows = list(body["rows"])
    for number in range(2, body["pages"] + 1):
        more = http.get("/api/findings", params=params | {"page": str(number)}).json()
        assert more["total"] == body["total"]
        rows += more["rows"]
    assert len(rows) == body["total"]
    return body["total"], rows


def keys(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (rule, address) of each row."""
    return {(row["rule"], row["address"]) for row in rows}


def in_group(address: str, group: str) -> bool:
    """Whether an address lies in a test group's network."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(GROUP_NETWORKS[group])
    except ValueError:
        return False


def test_rows_are_the_listings_objects_with_id_note_and_evidence_text(
    client: httpx.Client, cli_findings: list[dict[str, Any]]
) -> None:
    total, rows = all_pages(client, status="all")
    assert total == len(cli_findings) > PAGE_SIZE * 2
    by_key = {(row["rule"], row["address"]): row for row in rows}
    for listed in cli_findings:
        row = by_key[listed["rule"], listed["address"]]
        assert {key: row[key] for key in listed} == listed
        assert isinstance(row["id"], int)
        assert row["note"] == ""
        assert isinstance(row["evidence_text"], list)
    socks = by_key[SOCKS]
    assert socks["evidence"] == ["socks:2"]
    assert "SOCKS5 10.0.0.55 -> 60.190.189.214:8124" in socks["evidence_text"][0]


FILTERS: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda row: row["status"] == "open"),
    ({"status": "resolved"}, lambda row: row["status"] == "resolved"),
    ({"status": "acknowledged"}, lambda row: row["status"] == "acknowledged"),
    ({"status": "all", "rule": "new-smtp-client"}, lambda row: row["rule"] == "new-smtp-client"),
    (
        {"severity": "medium"},
        lambda row: row["status"] == "open" and row["severity"] == "medium",
    ),
    (
        {"status": "all", "group": "desks"},
        lambda row: in_group(row["address"], "desks"),
    ),
    (
        {"group": "servers", "rule": "new-smtp-client", "status": "all"},
        lambda row: in_group(row["address"], "servers") and row["rule"] == "new-smtp-client",
    ),
    (
        {"status": "all", "since": "2026-03-01", "until": "2026-03-02"},
        lambda row: "2026-03-01" <= row["last_seen"] < "2026-03-02",
    ),
    (
        {"status": "all", "since": "2026-01-01"},
        lambda row: row["last_seen"] >= "2026-01-01",
    ),
    (
        {"status": "all", "until": "2015-01-01"},
        lambda row: row["last_seen"] < "2015-01-01",
    ),
    (
        {"status": "all", "q": "OUTSIDE SMTP"},
        lambda row: "outside smtp" in row["summary"].lower(),
    ),
    (
        {"status": "all", "q": "192.168.4"},
        lambda row: "192.168.4" in row["address"],
    ),
    ({"status": "all", "q": "socks"}, lambda row: "socks" in (row["rule"] + row["summary"])),
    ({"status": "all", "q": "%"}, lambda row: "%" in row["summary"]),
]


@pytest.mark.parametrize(("params", "wanted"), FILTERS)
def test_each_filter_selects_what_the_listing_holds(
    client: httpx.Client,
    cli_findings: list[dict[str, Any]],
    params: dict[str, str],
    wanted: Callable[[dict[str, Any]], bool],
) -> None:
    expected = keys([row for row in cli_findings if wanted(row)])
    total, rows = all_pages(client, **params)
    assert keys(rows) == expected
    assert total == len(expected)
    body = client.get("/api/findings", params=params).json()
    assert body["filters"]["status"] == params.get("status", "open")
    # The page shows the same rows' count.
    page = client.get("/findings", params=params)
    assert page.status_code == 200
    assert f"{total} finding" in page.text


@pytest.mark.parametrize(
    ("params", "expected_count"),
    [({"status": "all", "severity": "high"}, 3), ({"status": "resolved"}, 9)],
)
def test_the_test_inventory_has_what_the_filters_are_tried_on(
    client: httpx.Client, params: dict[str, str], expected_count: int
) -> None:
    assert all_pages(client, **params)[0] == expected_count


def test_pages_cover_every_finding_once_and_links_keep_the_filters(client: httpx.Client) -> None:
    total, rows = all_pages(client, status="all", sort="address", order="asc")
    assert len({row["id"] for row in rows}) == total
    pages = math.ceil(total / PAGE_SIZE)
    middle = client.get("/findings", params={"status": "all", "q": "10.", "page": "2"})
    assert middle.status_code == 200
    links = {
        name: html.unescape(href)
        for href, name in re.findall(r'<a href="(/findings\?[^"]+)"[^>]*>(\w+)</a>', middle.text)
    }
    assert set(links) == {"first", "previous", "next", "last"} or pages == 2
    for href in links.values():
        assert "status=all" in href
        assert "q=10." in href
    assert "page=1" in links["previous"]
    beyond = client.get("/api/findings", params={"status": "all", "page": str(pages + 5)}).json()
    assert beyond["rows"] == []
    assert beyond["total"] == total


SORTED: list[tuple[str, str, Callable[[dict[str, Any]], Any], bool]] = [
    ("last_seen", "", lambda row: row["last_seen"], True),
    ("first_seen", "asc", lambda row: row["first_seen"], False),
    ("severity", "", lambda row: -SEVERITIES.index(row["severity"]), True),
    ("rule", "", lambda row: row["rule"], False),
    ("address", "desc", lambda row: row["address"], True),
]


@pytest.mark.parametrize(("sort", "order", "key", "descending"), SORTED)
def test_sorts_order_every_page(
    client: httpx.Client,
    sort: str,
    order: str,
    key: Callable[[dict[str, Any]], Any],
    descending: bool,
) -> None:
    params = {"status": "all", "sort": sort} | ({"order": order} if order else {})
    _, rows = all_pages(client, **params)
    primary = [key(row) for row in rows]
    assert primary == sorted(primary, reverse=descending)
    assert len(set(primary)) > 1
    # Ties are broken by rule then address: the same order on every request.
    ties = [(key(row), row["rule"], row["address"]) for row in rows]
    for before, after in itertools.pairwise(ties):
        if before[0] == after[0]:
            assert before[1:] < after[1:]


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"rule": "nope"}, "rule: 'nope' is not one of anonymous-ftp, "),
        ({"severity": "urgent"}, "severity: 'urgent' is not one of high, info, low, medium"),
        ({"status": "closed"}, "status: 'closed' is not one of"),
        ({"group": "lab"}, "group: 'lab' is not a group; the groups are servers, desks"),
        ({"since": "yesterday"}, "since: 'yesterday' is not a date"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "until: must be after since"),
        ({"page": "0"}, "page: '0' is not a whole number from 1 to"),
        ({"page": "two"}, "page: 'two' is not a whole number"),
        ({"sort": "colour"}, "sort: 'colour' is not one of address, first_seen, last_seen"),
        ({"order": "up"}, "order: 'up' is not one of asc, desc"),
        ({"q": "x" * 201}, "q: longer than 200 characters"),
    ],
)
def test_bad_parameters_are_one_sentence(
    client: httpx.Client, params: dict[str, str], sentence: str
) -> None:
    answer = client.get("/api/findings", params=params)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(sentence)
    page = client.get("/findings", params=params)
    assert page.status_code == 400
    shown = re.search(r'<p class="error">(.*?)</p>', page.text)
    assert shown is not None
    assert html.unescape(shown.group(1)).startswith(sentence)
    assert "Traceback" not in page.text


def test_hostile_text_is_shown_escaped(client: httpx.Client) -> None:
    page = client.get("/findings", params={"status": "all", "rule": "open-relay"})
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "relay &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert ">10.10.1.250&lt;script&gt;" in page.text
    assert 'href="/hosts/10.10.1.250%3Cscript%3E' in page.text
    evidence = client.get("/findings", params={"status": "all", "q": "8.8.8.8"})
    assert "<script>" not in evidence.text
    assert "&lt;script&gt;" in evidence.text
    row = client.get("/api/findings", params={"status": "all", "rule": "open-relay"}).json()
    assert row["rows"][0]["address"] == HOSTILE_ADDRESS


def _form_token(http: httpx.Client, params: dict[str, str]) -> str:
    """The form token of a findings page (loading it starts the session)."""
    page = http.get("/findings", params=params)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _row(http: httpx.Client, rule: str, address: str) -> dict[str, Any]:
    """A finding as the JSON twin shows it now."""
    rows = http.get("/api/findings", params={"status": "all", "rule": rule}).json()["rows"]
    found: dict[str, Any] = next(row for row in rows if row["address"] == address)
    return found


def _delivered(path: Path, wanted: tuple[str, str]) -> list[tuple[str, str]]:
    """(rule, action) of what a jsonl alert output wrote, once `wanted` is there (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        sent = [(doc["rule"]["name"], doc["event"]["action"]) for doc in map(json.loads, lines)]
        if wanted in sent or time.monotonic() > deadline:
            return sent
        time.sleep(0.05)


def test_acknowledge_with_a_note_then_un_acknowledge(own: tuple[Path, Path]) -> None:
    db, conf = own
    alerts = conf.parent / "socks.jsonl"
    conf.write_text(
        conf.read_text()
        + f'[[alerts]]\ntype = "jsonl"\nname = "socks"\npath = "{alerts}"\n'
        + f'rules = ["{SOCKS[0]}"]\n'
    )
    store = Store.open(str(db))
    before = len(events(db))
    back = {"status": "all", "severity": "high", "page": "1"}
    with console_client(_config(conf), store) as http:
        token = _form_token(http, back)
        note = "lab proxy <b>known</b> — ticket 42"
        posted = http.post(
            "/findings/acknowledge",
            data={
                "csrf": token,
                "rule": SOCKS[0],
                "address": SOCKS[1],
                "note": note,
                "back": "status=all&severity=high&page=1&next=https://evil.example/",
            },
        )
        assert posted.status_code == 303
        assert posted.headers["location"].endswith("/findings?status=all&severity=high&page=1")
        reloaded = http.get(posted.headers["location"])
        row = re.search(
            r'<tr id="finding-\d+" class="finding status-acknowledged">.*?</tr>',
            reloaded.text,
            re.S,
        )
        assert row is not None
        assert "60.190.189.214" in row.group(0)
        assert "lab proxy &lt;b&gt;known&lt;/b&gt; — ticket 42" in row.group(0)
        assert "Un-acknowledge" in row.group(0)
        acked = _row(http, *SOCKS)
        assert acked["status"] == "acknowledged"
        assert acked["note"] == note
        assert acked["acknowledged"] is not None
        listed = http.get("/api/findings", params={"status": "acknowledged"}).json()
        assert keys(listed["rows"]) == {SOCKS}
        recorded = events(db, SOCKS[0])[-1]
        assert (recorded["action"], recorded["address"], recorded["note"]) == (
            "acknowledged",
            SOCKS[1],
            note,
        )
        # The event goes out to the configured outputs after the answer, as after `ack`.
        assert _delivered(alerts, (SOCKS[0], "acknowledged")) == [
            (SOCKS[0], "opened"),
            (SOCKS[0], "acknowledged"),
        ]
        undone = http.post(
            "/findings/unacknowledge",
            data={"csrf": token, "rule": SOCKS[0], "address": SOCKS[1], "back": ""},
        )
        assert undone.status_code == 303
        assert undone.headers["location"].endswith("/findings")
        reopened = _row(http, *SOCKS)
        assert (reopened["status"], reopened["note"], reopened["acknowledged"]) == (
            "open",
            "",
            None,
        )
        assert [event["action"] for event in events(db)[before:]] == ["acknowledged", "reopened"]
        assert _delivered(alerts, (SOCKS[0], "reopened"))[-1] == (SOCKS[0], "reopened")
        # A second un-acknowledge of the now open finding changes nothing.
        again = http.post(
            "/findings/unacknowledge",
            data={"csrf": token, "rule": SOCKS[0], "address": SOCKS[1]},
        )
        assert again.status_code == 400
        assert "is open, not acknowledged" in again.text
        missing = http.post(
            "/findings/acknowledge",
            data={"csrf": token, "rule": "open-relay", "address": "10.9.9.9", "note": ""},
        )
        assert missing.status_code == 404
        assert "no open-relay finding on 10.9.9.9" in missing.text
    assert len(events(db)) == before + 2
    store.close()


def test_a_post_without_the_form_token_changes_nothing(own: tuple[Path, Path]) -> None:
    db, conf = own
    store = Store.open(str(db))
    before = len(events(db))
    with console_client(_config(conf), store) as http:
        token = _form_token(http, {})
        fields = {"rule": SOCKS[0], "address": SOCKS[1], "note": "sneaky"}
        for sent in (fields, fields | {"csrf": "forged"}, fields | {"csrf": ""}):
            refused = http.post("/findings/acknowledge", data=sent)
            assert refused.status_code == 403
            assert "token is missing or stale" in refused.text
        assert _row(http, *SOCKS)["status"] == "open"
        # Another session's token is no good either.
        with httpx.Client(base_url=str(http.base_url)) as stranger:
            refused = stranger.post("/findings/acknowledge", data=fields | {"csrf": token})
            assert refused.status_code == 403
        assert _row(http, *SOCKS)["status"] == "open"
    assert len(events(db)) == before
    store.close()


def test_a_reader_sees_no_triage_forms_and_may_not_post(own: tuple[Path, Path]) -> None:
    db, conf = own
    conf.write_text(conf.read_text() + READER)
    store = Store.open(str(db))
    before = len(events(db))
    with console_client(_config(conf), store) as http:
        http.headers["Authorization"] = f"Bearer {READ_TOKEN}"
        page = http.get("/findings", params={"rule": SOCKS[0]})
        assert page.status_code == 200
        assert "60.190.189.214" in page.text
        assert 'action="/findings/acknowledge"' not in page.text
        refused = http.post(
            "/findings/acknowledge", data={"rule": SOCKS[0], "address": SOCKS[1], "note": "x"}
        )
        assert refused.status_code == 403
        assert "may read but not triage" in refused.text
    assert len(events(db)) == before
    store.close()


def test_findings_unack_reopens_an_acknowledged_finding(
    capsys: pytest.CaptureFixture[str], own: tuple[Path, Path]
) -> None:
    db, conf = own
    base = ["--db", str(db), "--config", str(conf), "-q", "findings"]
    before = len(events(db))
    acked = run_cli(capsys, *base, "ack", *SOCKS, "--note", "lab")
    assert acked.code == 0, acked.err
    unacked = run_cli(capsys, *base, "unack", *SOCKS)
    assert unacked.code == 0, unacked.err
    assert unacked.out.strip() == f"un-acknowledged {SOCKS[0]} on {SOCKS[1]}: open again"
    listed = cli_json(capsys, db, conf, "findings", "list", "--rule", SOCKS[0])
    assert [(row["address"], row["status"]) for row in listed] == [(SOCKS[1], "open")]
    recorded = events(db)[before:]
    assert [(event["action"], event["note"]) for event in recorded] == [
        ("acknowledged", "lab"),
        ("reopened", ""),
    ]
    again = run_cli(capsys, *base, "unack", *SOCKS)
    assert again.code == 2
    assert f"the {SOCKS[0]} finding on {SOCKS[1]} is open, not acknowledged" in again.err
    missing = run_cli(capsys, *base, "unack", "open-relay", "10.9.9.9")
    assert missing.code == 2
    assert "no open-relay finding on 10.9.9.9" in missing.err
    assert "Traceback" not in missing.err + again.err
    assert len(events(db)) == before + 2
