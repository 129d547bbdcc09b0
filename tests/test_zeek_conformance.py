"""The logs Zeek wrote for the conformance captures, read back field by field.

The logs' timestamps are masked (XXXXXXXXXX.XXXXXX); each test writes a copy
with a real time in their place, and checks that the masked original is
reported line by line rather than read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import SmtpTransaction, SocksRequest
from tests.data_paths import CONFORMANCE
from tests.zeek_helpers import split_items

TS = "1254722767.492303"
TS_TIME = datetime(2009, 10, 5, 6, 6, 7, 492303, tzinfo=UTC)
CASES = ["smtp-basic/smtp.log", "smtp-starttls/smtp.log", "socks-trace1/socks.log"]
CASES += ["socks-auth/socks.log"]


def raw_lines(path: Path) -> list[dict[str, str]]:
    """The data lines of a Zeek TSV log as name → raw value (a parser independent of the reader)."""
    fields: list[str] = []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def unmasked(case: str, tmp_path: Path) -> Path:
    """A copy of a conformance log with a real time where Zeek's test masked it."""
    source = CONFORMANCE / case
    target = tmp_path / source.name
    target.write_text(source.read_text(encoding="utf-8").replace("XXXXXXXXXX.XXXXXX", TS))
    return target


def text(raw: str) -> str:
    """What an unset or empty scalar field reads as."""
    return "" if raw in ("-", "(empty)") else raw


def items(raw: str) -> tuple[str, ...]:
    """What a set field reads as."""
    return () if raw in ("-", "(empty)") else tuple(raw.split(","))


@pytest.mark.parametrize("case", CASES)
def test_the_masked_original_is_reported_not_read(case: str) -> None:
    records, warnings = split_items(read_zeek(CONFORMANCE / case, ZeekSettings()))
    assert records == []
    assert len(warnings) == len(raw_lines(CONFORMANCE / case))
    assert all("XXXXXXXXXX.XXXXXX" in w.message for w in warnings)


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith("smtp.log")])
def test_smtp_records_match_every_field_of_the_log(case: str, tmp_path: Path) -> None:
    path = unmasked(case, tmp_path)
    records, warnings = split_items(read_zeek(path, ZeekSettings()))
    assert warnings == []
    raw = raw_lines(path)
    assert len(records) == len(raw)
    for record, line in zip(records, raw, strict=True):
        assert record == SmtpTransaction(
            ts=TS_TIME,
            client=line["id.orig_h"],
            client_port=int(line["id.orig_p"]),
            server=line["id.resp_h"],
            server_port=int(line["id.resp_p"]),
            source="zeek",
            trans_depth=int(line["trans_depth"]),
            helo=text(line["helo"]),
            mail_from=text(line["mailfrom"]),
            rcpt_to=items(line["rcptto"]),
            subject=text(line["subject"]),
            from_=text(line["from"]),
            to=items(line["to"]),
            date=text(line["date"]),
            msg_id=text(line["msg_id"]),
            user_agent=text(line["user_agent"]),
            last_reply=text(line["last_reply"]),
            tls=line["tls"] == "T",
        )


def test_smtp_basic_holds_what_the_capture_shows(tmp_path: Path) -> None:
    records, _ = split_items(read_zeek(unmasked("smtp-basic/smtp.log", tmp_path), ZeekSettings()))
    first, second = records
    assert isinstance(first, SmtpTransaction)
    assert isinstance(second, SmtpTransaction)
    assert (first.client, first.server, first.helo) == ("10.10.1.4", "74.53.140.153", "GP")
    assert first.user_agent == "Microsoft Office Outlook 12.0"
    assert first.rcpt_to == ("raj_deol2002in@yahoo.co.in",)
    assert second.user_agent == "Apple Mail (2.2102)"
    assert second.rcpt_to == (
        "felica4uu@hotmail.com",
        "ericlim220@yahoo.com",
        "davis_mark1@outlook.com",
    )
    assert second.to == ("ericlim220@yahoo.com",)  # the others were Cc
    assert second.subject == "Re: Bro SMTP CC Header"
    assert (second.last_reply, second.tls) == ("250 Ok", False)


def test_smtp_starttls_is_tls_with_nothing_after(tmp_path: Path) -> None:
    path = unmasked("smtp-starttls/smtp.log", tmp_path)
    (record,), _ = split_items(read_zeek(path, ZeekSettings()))
    assert isinstance(record, SmtpTransaction)
    assert record.tls is True
    assert (record.helo, record.mail_from, record.rcpt_to) == ("openssl.client.net", "", ())
    assert record.last_reply == "220 2.0.0 Ready to start TLS"


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith("socks.log")])
@pytest.mark.parametrize("keep", [False, True])
def test_socks_records_match_every_field_of_the_log(case: str, keep: bool, tmp_path: Path) -> None:
    path = unmasked(case, tmp_path)
    records, warnings = split_items(read_zeek(path, ZeekSettings(keep_passwords=keep)))
    assert warnings == []
    raw = raw_lines(path)
    for record, line in zip(records, raw, strict=True):
        assert record == SocksRequest(
            ts=TS_TIME,
            client=line["id.orig_h"],
            client_port=int(line["id.orig_p"]),
            proxy=line["id.resp_h"],
            proxy_port=int(line["id.resp_p"]),
            source="zeek",
            version=int(line["version"]),
            user=text(line["user"]),
            password=text(line["password"]) if keep else "",
            status=text(line["status"]),
            request_host=text(line["request.host"]),
            request_name=text(line["request.name"]),
            request_port=int(line["request_p"]),
            bound_host=text(line["bound.host"]),
            bound_port=int(line["bound_p"]),
        )


def test_socks_cases_hold_what_the_captures_show(tmp_path: Path) -> None:
    path = unmasked("socks-trace1/socks.log", tmp_path)
    (named,), _ = split_items(read_zeek(path, ZeekSettings()))
    assert isinstance(named, SocksRequest)
    assert (named.proxy_port, named.version, named.status) == (8124, 5, "succeeded")
    assert (named.request_host, named.request_name, named.request_port) == (
        "",
        "www.osnews.com",
        80,
    )
    assert (named.bound_host, named.bound_port) == ("192.168.0.31", 2688)
    path = unmasked("socks-auth/socks.log", tmp_path)
    (auth,), _ = split_items(read_zeek(path, ZeekSettings()))
    assert isinstance(auth, SocksRequest)
    assert (auth.user, auth.password, auth.request_host, auth.request_port) == (
        "bob",
        "",
        "192.168.0.2",
        22,
    )
