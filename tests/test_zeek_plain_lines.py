"""The fast path for plain smtp, socks and dns lines makes what the general path makes.

A line with an escape anywhere in the fields rolecall reads goes to the general
handler; a plain one takes the fast path. Each case here is written twice: as
it is, and with one character of a text field written as Zeek's ``\\xNN``
escape, which decodes to the same text. Both lines must give the same records,
or the same warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from tests.zeek_helpers import SMTP_LINE, SOCKS_LINE, T0, split_items, write_tsv

DNS = {
    "ts": T0,
    "id.orig_h": "192.0.2.10",
    "id.orig_p": "53000",
    "id.resp_h": "192.0.2.53",
    "id.resp_p": "53",
    "proto": "udp",
    "query": "Mail.Example.COM.",
    "qtype_name": "A",
    "rcode_name": "NOERROR",
    "answers": "cdn.example.net,198.51.100.7,2001:DB8:0::1",
}
# (log, the text field escaped in the twin, the base row, variations of it)
CASES: list[tuple[str, str, dict[str, str], list[dict[str, str]]]] = [
    (
        "smtp",
        "date",
        SMTP_LINE,
        [
            {},
            {"ts": "1795392000"},
            {"ts": "1795392000.25"},
            {"ts": "1795392000.1234567"},
            {"ts": "1795392000.12345\u0663"},  # a non-ASCII digit
            {"ts": "1795392000.x23456"},
            {"ts": "99999999999999.5"},
            {"id.orig_h": "2001:DB8:0:0::1"},
            {"id.orig_h": "fe80::1%eth0"},
            {"id.resp_h": "not-an-address"},
            {"id.orig_p": "0"},
            {"id.orig_p": "00025"},
            {"id.orig_p": "70000"},
            {"id.resp_p": "-"},
            {"trans_depth": "-"},
            {"trans_depth": "(empty)"},
            {"trans_depth": "-1"},
            {"trans_depth": "99999999999999999999"},
            {"helo": "-", "mailfrom": "(empty)", "subject": "-", "msg_id": "(empty)"},
            {"rcptto": "(empty)", "to": "-"},
            {"rcptto": "one@example.net"},
            {"tls": "F"},
            {"tls": "-"},
            {"user_agent": "Mozilla/5.0 \u00e9t\u00e9"},
        ],
    ),
    (
        "socks",
        "status",
        SOCKS_LINE | {"request.host": "203.0.113.5"},
        [
            {},
            {"ts": "1795392000.5"},
            {"user": "-", "password": "-"},
            {"request.host": "-"},
            {"request.host": "(empty)", "request.name": "-"},
            {"request.host": "2001:db8::0:5"},
            {"request.host": "www.example.com"},
            {"bound.host": "-", "bound_p": "-"},
            {"bound.host": "bad"},
            {"request_p": "(empty)"},
            {"request_p": "65536"},
            {"bound_p": "0"},
            {"version": "-"},
            {"version": "4"},
            {"id.resp_h": "198.51.100.080"},
        ],
    ),
    (
        "dns",
        "rcode_name",
        DNS,
        [
            {},
            {"qtype_name": "AAAA", "answers": "2001:db8::7"},
            {"qtype_name": "MX", "answers": "mx.example.net"},
            {"qtype_name": "PTR", "answers": "host.example.org"},
            {"answers": "-"},
            {"answers": "(empty)"},
            {"query": "-"},
            {"query": "(empty)", "qtype_name": "MX"},
            {"proto": "-"},
            {"proto": "TCP"},
            {"qtype_name": "-"},
            {"answers": "198.51.100.7,198.51.100.7,fe80::1%eth0"},
            {"id.resp_h": "nope"},
            {"id.resp_p": "x53"},
            {"ts": "1795392000.000001"},
        ],
    ),
]
HEADERS = [{}, {"unset": "NONE", "empty": "EMPTY", "set_separator": ";"}]


def escaped(value: str) -> str:
    """The value with its first character written as Zeek's \\xNN escape."""
    return f"\\x{ord(value[0]):02x}{value[1:]}"


def marked(row: dict[str, str], header: dict[str, str]) -> dict[str, str]:
    """The row as written under a header with other unset/empty markers and set separator."""
    swap = {"-": header.get("unset", "-"), "(empty)": header.get("empty", "(empty)")}
    separator = header.get("set_separator", ",")
    return {name: swap.get(value, value).replace(",", separator) for name, value in row.items()}


def read(path: Path) -> tuple[list[object], list[str]]:
    """A log's records and its warnings' messages."""
    records, warnings = split_items(read_zeek(path, ZeekSettings(keep_passwords=True)))
    return list(records), [warning.message for warning in warnings]


@pytest.mark.parametrize("header", HEADERS, ids=["default", "own-markers"])
@pytest.mark.parametrize(
    ("log", "twin_field", "base", "variations"), CASES, ids=[case[0] for case in CASES]
)
def test_plain_lines_read_as_their_escaped_twins(
    tmp_path: Path,
    header: dict[str, str],
    log: str,
    twin_field: str,
    base: dict[str, str],
    variations: list[dict[str, str]],
) -> None:
    read_any = False
    for number, variation in enumerate(variations):
        row = marked(base | variation, header)
        twin = row | {twin_field: escaped(row[twin_field])}
        plain = read(write_tsv(tmp_path / f"{number}-plain.{log}.log", log, [row], **header))
        general = read(write_tsv(tmp_path / f"{number}-twin.{log}.log", log, [twin], **header))
        assert plain == general, variation
        read_any = read_any or bool(plain[0])
    assert read_any


def test_dns_answers_and_detail_on_the_fast_path(tmp_path: Path) -> None:
    records, warnings = read(write_tsv(tmp_path / "dns.log", "dns", [DNS]))
    assert warnings == []
    names = sorted(getattr(record, "address", "") for record in records[1:])
    assert names == ["198.51.100.7", "2001:db8::1"]
    assert getattr(records[0], "detail", "") == (
        '{"query": "mail.example.com", "qtype": "A", "rcode": "NOERROR"}'
    )
