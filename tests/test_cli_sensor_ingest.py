"""`ingest zeek` and `ingest firewall` through the command line into the inventory, once."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.zeek_helpers import write_tsv

SMTP_ROW = {
    "ts": "1795485410.123456",
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": "10.20.30.40",
    "id.orig_p": "50123",
    "id.resp_h": "198.51.100.25",
    "id.resp_p": "25",
    "trans_depth": "1",
    "helo": "web01",
    "mailfrom": "promo@shop.example",
    "rcptto": "a@example.org,b@example.net",
    "subject": "=cmd|' /C calc'!A0",
    "user_agent": "The Bat! (v3.5)",
    "last_reply": "250 OK",
    "tls": "F",
}


def test_zeek_smtp_log_lands_once_and_is_exported(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    logs = tmp_path / "zeek" / "2026-11-23"
    logs.mkdir(parents=True)
    write_tsv(logs / "smtp.log", "smtp", [SMTP_ROW])
    base = ("--db", database)
    first = run_cli(capsys, *base, "ingest", "zeek", str(tmp_path / "zeek"))
    assert first.code == 0, first.err
    again = run_cli(capsys, *base, "ingest", "zeek", str(tmp_path / "zeek"))
    assert "1 already ingested, unchanged" in again.out

    rows = json.loads(run_cli(capsys, *base, "export", "smtp", "--format", "json").out)
    assert len(rows) == 1
    row = rows[0]
    assert (row["client"], row["server"], row["server_port"]) == (
        "10.20.30.40",
        "198.51.100.25",
        25,
    )
    assert row["rcpt_to"] == ["a@example.org", "b@example.net"]
    assert row["user_agent"] == "The Bat! (v3.5)"
    assert row["ts"] == "2026-11-24T01:56:50.123456Z"
    assert row["source"] == "zeek"

    as_csv = run_cli(capsys, *base, "export", "smtp").out
    (parsed,) = csv.DictReader(io.StringIO(as_csv))
    assert parsed["subject"] == "'=cmd|' /C calc'!A0"

    inventory = run_cli(capsys, *base, "export", "inventory", "--format", "json").out
    roles = {r["address"]: r["roles"] for r in json.loads(inventory)}
    # only ever seen as a client, with no services: a workstation (SPEC)
    assert roles == {
        "10.20.30.40": ["smtp-client", "workstation"],
        "198.51.100.25": ["smtp-server"],
    }


def test_zeek_path_without_logs_is_bad_input(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    result = run_cli(capsys, "--db", database, "ingest", "zeek", str(tmp_path))
    assert result.code == 2
    assert result.err.strip() == f"rolecall: no Zeek logs found in {tmp_path}"


def test_firewall_smtp_denies_become_flows(
    capsys: pytest.CaptureFixture[str], database: str, tmp_path: Path
) -> None:
    log = tmp_path / "kern.log"
    line = (
        "2026-11-24T03:00:0{n}+0000 gw kernel: RC-DENY IN=eth1 OUT=eth0 SRC=10.20.30.41"
        " DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=4000{n}"
        " DPT=25 WINDOW=64240 RES=0x00 SYN URGP=0\n"
    )
    log.write_text("".join(line.format(n=n) for n in range(3)) + "not a netfilter line\n")
    result = run_cli(capsys, "--db", database, "ingest", "firewall", str(log))
    assert result.code == 0, result.err
    flows = json.loads(run_cli(capsys, "--db", database, "export", "flows", "--format", "json").out)
    assert [
        (f["client"], f["server"], f["server_port"], f["connections"], f["answered"]) for f in flows
    ] == [("10.20.30.41", "203.0.113.5", 25, 3, False)]
