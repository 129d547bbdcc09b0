"""`rolecall mail cluster`: grouping real mail by a field, filters, geo enrichment, bad input."""

from __future__ import annotations

import csv
import importlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction
from rolecall.reports.clusters.fields import FIELD_NAMES
from rolecall.reports.clusters.view import FIELDS
from tests.cli_helpers import run_cli
from tests.report_helpers import ingest_conformance

START = datetime(2026, 2, 1, 9, tzinfo=UTC)
# Senders by (address, count): Google's and Cloudflare's public addresses, as data only.
SENDERS = (("8.8.8.8", 6), ("8.8.4.4", 3), ("1.1.1.1", 1), ("45.67.89.10", 2))


def _mail() -> list[SmtpTransaction]:
    """Spam-like mail from outside senders: one subject to many, another to a few."""
    records: list[SmtpTransaction] = []
    for address, count in SENDERS:
        for index in range(count):
            records.append(
                SmtpTransaction(
                    START + timedelta(minutes=len(records)),
                    address,
                    40000 + index,
                    "10.10.1.4",
                    25,
                    "pcap",
                    mail_from=f"promo@{address}.example",
                    rcpt_to=(f"user{index % 4}@example.net", "all@example.net"),
                    subject="Cheap pills" if address != "1.1.1.1" else "Invoice \x1b[31mdue",
                    user_agent="The Bat! (v9.1)",
                )
            )
    return records


@pytest.fixture(scope="module")
def inventory(module_database: str) -> str:
    """The conformance captures plus outside senders' mail."""
    assert set(ingest_conformance(module_database)) == {0}
    store = Store.open(module_database)
    with store.writer() as writer:
        writer.add_all(_mail())
    store.close()
    return module_database


def test_subject_on_rcpt_lists_each_subject_with_its_recipients(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    result = run_cli(capsys, "--db", inventory, "mail", "cluster", "subject", "--on", "rcpt")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:2] == ["subject", "messages"]
    pills = next(line for line in lines if line.startswith("Cheap pills"))
    assert " 11 " in pills
    assert "all@example.net (11)" in pills
    # The conformance capture's mail with three recipients is its own cluster.
    bro = next(line for line in lines if line.startswith("Re: Bro SMTP CC Header"))
    assert "ericlim220@yahoo.com (1)" in bro
    # A terminal escape in a subject is shown, not obeyed.
    assert "Invoice \\x1b[31mdue" in result.out
    assert "\x1b" not in result.out
    assert lines[-1] == "5 clusters of 15 messages"


def test_where_filters_out_countries_and_local_senders(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    result = run_cli(
        capsys,
        "--db",
        inventory,
        "mail",
        "cluster",
        "src_country",
        "--on",
        "client",
        "--where",
        "src_country != US and src_country != lo",
        "--format",
        "json",
    )
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    # The built-in data (GeoLite2-derived) places 45.67.89.10 in Bulgaria, 1.1.1.1 in Australia.
    assert [row["src_country"] for row in rows] == ["BG", "AU"]
    assert rows[0]["client"] == [{"value": "45.67.89.10", "messages": 2}]
    assert rows[1]["client"] == [{"value": "1.1.1.1", "messages": 1}]


def test_which_network_sends_ninety_percent_is_one_command(
    capsys: pytest.CaptureFixture[str], inventory: str
) -> None:
    result = run_cli(
        capsys,
        "--db",
        inventory,
        "mail",
        "cluster",
        "src_org",
        "--on",
        "client",
        "--where",
        "src_country != lo",
        "--cover",
        "60",
        "--format",
        "csv",
    )
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [row["src_org"] for row in rows] == ["GOOGLE"]
    assert rows[0]["messages"] == "9"
    assert rows[0]["share"] == "0.75"
    assert rows[0]["client"] == "8.8.8.8 (6);8.8.4.4 (3)"


def _mmdb(path: Path) -> Path:
    """A MaxMind-format database with one network: 45.67.89.0/24 in NL, AS64500."""
    writer_module = importlib.import_module("mmdb_writer")
    netaddr = importlib.import_module("netaddr")
    writer = writer_module.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="test")
    writer.insert_network(
        netaddr.IPSet(["45.67.89.0/24"]),
        {
            "country": {"iso_code": "NL"},
            "autonomous_system_number": 64500,
            "autonomous_system_organization": "Example Hosting <b>BV</b>",
        },
    )
    writer.to_db_file(str(path))
    return path


def test_user_maxmind_database_gives_asn_org_and_prefix(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    database = _mmdb(tmp_path / "geo.mmdb")
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[geo]\ndatabases = ["{database}"]\n', encoding="utf-8")
    result = run_cli(
        capsys,
        "--config",
        str(config),
        "--db",
        inventory,
        "mail",
        "cluster",
        "src_asn",
        "--on",
        "src_prefix",
        "--where",
        "src_org ~ example",
        "--format",
        "json",
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == [
        {
            "src_asn": "AS64500",
            "messages": 2,
            "share": 1.0,
            "cumulative": 1.0,
            "distinct_src_prefix": 1,
            "src_prefix": [{"value": "45.67.89.0/24", "messages": 2}],
        }
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("subject", "--on", "rcpt", "--where", "src_country"), "expected FIELD OP VALUE"),
        (("subject", "--on", "rcpt", "--where", "colour = red"), "unknown field 'colour'"),
        (("subject", "--on", "rcpt", "--where", "client = a or client = b"), "expected 'and'"),
        (("subject", "--on", "rcpt", "--where", "client = a and"), "ends with 'and'"),
        (("subject", "--on", "rcpt", "--where", "client !! a"), "cannot read"),
        (("sender", "--on", "rcpt"), "FIELD: unknown field 'sender'"),
        (("subject", "--on", "recipient"), "--on: unknown field 'recipient'"),
    ],
)
def test_bad_expression_or_field_is_exit_2_with_one_sentence(
    capsys: pytest.CaptureFixture[str], inventory: str, args: tuple[str, ...], says: str
) -> None:
    result = run_cli(capsys, "--db", inventory, "mail", "cluster", *args)
    assert result.code == 2
    assert says in result.err
    assert result.err.count("\n") == 1
    assert result.out == ""


def test_unreadable_geo_database_is_exit_2(
    capsys: pytest.CaptureFixture[str], inventory: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a maxmind database")
    config = tmp_path / "rolecall.toml"
    config.write_text(f'[geo]\ndatabases = ["{broken}"]\n', encoding="utf-8")
    result = run_cli(
        capsys,
        "--config",
        str(config),
        "--db",
        inventory,
        "mail",
        "cluster",
        "src_org",
        "--on",
        "client",
    )
    assert result.code == 2
    assert f"cannot read MaxMind database {broken}" in result.err


def test_the_field_names_the_help_shows_are_the_fields_clustered() -> None:
    assert tuple(FIELDS) == FIELD_NAMES
