"""`ingest pcap` through the command line: real captures in, one merged inventory out."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.data_paths import CONFORMANCE


def _inventory(capsys: pytest.CaptureFixture[str], db: str) -> dict[str, dict[str, str]]:
    """The inventory export as rows by address."""
    out = run_cli(capsys, "--db", db, "export", "inventory").out
    return {row["address"]: row for row in csv.DictReader(io.StringIO(out))}


def test_conformance_captures_land_once(capsys: pytest.CaptureFixture[str], database: str) -> None:
    captures = sorted(str(p) for p in CONFORMANCE.glob("*/trace.pcap"))
    assert len(captures) == 4
    base = ("--db", database)
    first = run_cli(capsys, *base, "ingest", "pcap", *captures)
    assert first.code == 0, first.err
    before = run_cli(capsys, *base, "export", "smtp", "--format", "json").out
    again = run_cli(capsys, *base, "ingest", "pcap", *captures)
    assert again.code == 0
    assert "4 already ingested, unchanged" in again.out
    assert run_cli(capsys, *base, "export", "smtp", "--format", "json").out == before

    smtp = json.loads(before)
    basic = [row for row in smtp if row["client"] == "10.10.1.4"]
    assert len(basic) == 1
    assert basic[0]["user_agent"] == "Microsoft Office Outlook 12.0"
    assert basic[0]["source"] == "pcap"
    starttls = [row for row in smtp if row["client"] == "192.168.4.149"]
    assert [row["tls"] for row in starttls] == [True]

    socks = json.loads(run_cli(capsys, *base, "export", "socks", "--format", "json").out)
    assert {row["proxy"] for row in socks} >= {"192.168.0.1", "60.190.189.214"}

    inventory = _inventory(capsys, database)
    assert "smtp-client" in inventory["10.10.1.4"]["roles"].split(";")
    assert "smtp-server" in inventory["74.53.140.153"]["roles"].split(";")
    assert "socks-proxy" in inventory["192.168.0.1"]["roles"].split(";")
    # a server seen answering on 443 has the roles a probe of HTTPS gives it
    assert {"web-server", "https-server"} <= set(inventory["17.167.150.73"]["roles"].split(";"))


def test_capture_and_zeek_log_of_it_make_one_asset(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    case = CONFORMANCE / "smtp-basic"
    # Zeek's conformance logs mask their timestamps; give the log the capture's time.
    log = tmp_path / "smtp.log"
    text = (case / "smtp.log").read_text(encoding="utf-8")
    log.write_text(text.replace("XXXXXXXXXX.XXXXXX", "1254722769.614414"), encoding="utf-8")
    base = ("--db", database)
    assert run_cli(capsys, *base, "ingest", "pcap", str(case / "trace.pcap")).code == 0
    zeek = run_cli(capsys, *base, "ingest", "zeek", str(log))
    assert zeek.code == 0, zeek.err
    row = _inventory(capsys, database)["10.10.1.4"]
    assert row["sources"].split(";") == ["pcap", "zeek"]
    assert "smtp-client" in row["roles"].split(";")


def test_damaged_capture_is_bad_input_and_keeps_what_was_stored(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    base = ("--db", database)
    good = CONFORMANCE / "smtp-basic" / "trace.pcap"
    assert run_cli(capsys, *base, "ingest", "pcap", str(good)).code == 0
    stored = run_cli(capsys, *base, "export", "smtp").out

    not_pcap = tmp_path / "notes.pcap"
    not_pcap.write_text("this is not a capture\n")
    cut = tmp_path / "cut.pcap"
    data = (CONFORMANCE / "smtp-starttls" / "trace.pcap").read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    result = run_cli(capsys, *base, "ingest", "pcap", str(not_pcap), str(cut))
    assert result.code == 2
    assert "Traceback" not in result.err
    assert str(not_pcap) in result.err or "notes.pcap" in result.err
    # A cut capture keeps what was readable before the cut; nothing stored before is lost.
    after = run_cli(capsys, *base, "export", "smtp").out
    assert set(stored.splitlines()) <= set(after.splitlines())
