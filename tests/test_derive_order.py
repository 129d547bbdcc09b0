"""Incremental derivations end where a full one does, whatever the order the evidence came in.

Each `rolecall ingest` derives from the evidence it added; after the same ingests in any
order, roles, groups and findings are those of `findings derive --full` over all of it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rolecall.inventory.settings import DeriveSettings
from rolecall.inventory.store import Store
from rolecall.inventory.tables import METADATA
from rolecall.probes.records import SmtpTransaction, SocksRequest
from tests.cli_helpers import run_cli
from tests.data_paths import CONFORMANCE
from tests.inventory_sql import is_postgres, query
from tests.postgres_server import PostgresServer
from tests.test_zeek_worker import conn_row
from tests.zeek_helpers import tsv_header, tsv_line

DERIVED = ("role", "asset_group", "finding")
# Row ids, and the evidence lists that name rows by id, depend on the order of the writes.
NOT_CONTENT = frozenset({"id", "evidence"})
BASELINE_TIME = "1437831787.861602"  # 2015-07-25 13:43:07 UTC, the day of Zeek's mail captures


def _sources(tmp_path: Path) -> list[tuple[str, ...]]:
    """Ingests of other years and hosts: captures (2009-2015), Zeek mail (2015), flows (2026)."""
    mail = tmp_path / "zeek-mail"
    for case in ("smtp-basic", "smtp-starttls", "socks-trace1"):
        (mail / case).mkdir(parents=True)
        for log in (CONFORMANCE / case).glob("*.log"):
            # Zeek's test baselines blank the times out; these logs get the capture's day.
            text = log.read_text(encoding="utf-8").replace("XXXXXXXXXX.XXXXXX", BASELINE_TIME)
            (mail / case / log.name).write_text(text, encoding="utf-8")
    flows = tmp_path / "zeek-conn"
    flows.mkdir()
    lines = [tsv_header("conn"), *(tsv_line("conn", conn_row(n)) for n in range(600))]
    (flows / "conn.log").write_text("".join(lines), encoding="utf-8")
    captures = sorted(str(path) for path in CONFORMANCE.glob("*/trace.pcap"))
    return [("pcap", *captures), ("zeek", str(mail)), ("zeek", str(flows))]


def _derived(database: str) -> dict[str, Counter[tuple[Any, ...]]]:
    """The derived tables' rows as multisets of content."""
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    for table in METADATA.sorted_tables:
        if table.name not in DERIVED:
            continue
        columns = [column.name for column in table.columns if column.name not in NOT_CONTENT]
        listed = ", ".join(f'"{name}"' for name in columns)
        found[table.name] = Counter(query(database, f'SELECT {listed} FROM "{table.name}"'))  # noqa: S608 - names from the models
    return found


@pytest.fixture
def fresh_database(
    request: pytest.FixtureRequest, database: str, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes more empty inventories on the backend of `database` (the first is `database`)."""
    made: list[str] = []
    server: PostgresServer | None = (
        request.getfixturevalue("postgres") if is_postgres(database) else None
    )

    def make() -> str:
        if not made:
            made.append(database)
        elif server is None:
            made.append(str(tmp_path / f"inventory-{len(made)}.db"))
        else:
            made.append(server.create_database())
        return made[-1]

    yield make
    if server is not None:
        for url in made[1:]:
            server.drop_database(url)


def test_every_order_of_ingests_derives_what_a_full_derivation_does(
    fresh_database: Callable[[], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = _sources(tmp_path)
    results: dict[tuple[int, ...], dict[str, Counter[tuple[Any, ...]]]] = {}
    inventory = ""
    for order in itertools.permutations(range(len(sources))):
        inventory = fresh_database()
        for index in order:
            result = run_cli(capsys, "--db", inventory, "-q", "ingest", *sources[index])
            assert result.code == 0, (order, result.err)
        results[order] = _derived(inventory)
    assert run_cli(capsys, "--db", inventory, "-q", "findings", "derive", "--full").code == 0
    full = _derived(inventory)
    assert sum(full["role"].values()) > 0
    assert sum(full["finding"].values()) > 0
    assert any(row[1] == "workstation" for row in full["role"])
    for order, derived in results.items():
        for table in DERIVED:
            assert derived[table] == full[table], (order, table)


def _mail_through_proxy() -> list[list[Any]]:
    """Two ingests: mail read inside a SOCKS tunnel, and the SOCKS request that opened it."""
    seen = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    mail = SmtpTransaction(
        seen, "10.9.0.5", 40001, "198.51.100.25", 25, "zeek", via_proxy="10.9.0.9"
    )
    # The proxy's own copy of the message, on its connection out.
    copy = SmtpTransaction(
        seen, "10.9.0.9", 40002, "198.51.100.25", 25, "zeek", relayed_for="10.9.0.5"
    )
    request = SocksRequest(
        seen,
        "10.9.0.5",
        40003,
        "10.9.0.9",
        1080,
        "zeek",
        5,
        status="succeeded",
        request_host="198.51.100.25",
        request_port=25,
    )
    return [[mail, copy], [request]]


def test_mail_judged_before_its_tunnel_is_judged_again_with_it(
    fresh_database: Callable[[], str],
) -> None:
    ingests = _mail_through_proxy()
    results = []
    inventory = ""
    for order in (ingests, ingests[::-1]):
        inventory = fresh_database()
        store = Store.open(inventory)
        try:
            for records in order:
                with store.writer() as writer:
                    writer.add_all(records)
                store.derive(DeriveSettings())
        finally:
            store.close()
        results.append(_derived(inventory))
    store = Store.open(inventory)
    try:
        store.derive(DeriveSettings(), full=True)
    finally:
        store.close()
    full = _derived(inventory)
    summaries = sorted(row[3] for row in full["finding"] if row[0] == "mail-via-proxy")
    assert len(summaries) == 2
    assert all("SOCKS proxy" in text for text in summaries), summaries
    for derived in results:
        for table in DERIVED:
            assert derived[table] == full[table], table
