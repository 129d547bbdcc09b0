"""Write Zeek logs exactly as Zeek does: TSV with its full header, or JSON lines."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rolecall.probes.records import Item, ReadWarning, Record

# Zeek 6's default columns and types for the logs rolecall reads.
LOGS: dict[str, tuple[str, str]] = {
    "conn": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
        "resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts "
        "orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents",
        "time string addr port addr port enum string interval count count string bool bool "
        "count string count count count count set[string]",
    ),
    "smtp": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth helo mailfrom rcptto date "
        "from to cc reply_to msg_id in_reply_to subject x_originating_ip first_received "
        "second_received last_reply path user_agent tls fuids",
        "time string addr port addr port count string string set[string] string string "
        "set[string] set[string] string string string string addr string string string "
        "vector[addr] string bool vector[string]",
    ),
    "socks": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version user password status "
        "request.host request.name request_p bound.host bound.name bound_p",
        "time string addr port addr port count string string string addr string port addr "
        "string port",
    ),
    "software": (
        "ts host host_p software_type name version.major version.minor version.minor2 "
        "version.minor3 version.addl unparsed_version",
        "time addr port enum string count count count count string string",
    ),
    "known_services": ("ts host port_num port_proto service", "time addr port enum set[string]"),
    "known_hosts": ("ts host", "time addr"),
    "dns": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass "
        "qclass_name qtype qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected",
        "time string addr port addr port enum count interval string count string count string "
        "count string bool bool bool bool count vector[string] vector[interval] bool",
    ),
    "http": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri referrer "
        "version user_agent origin request_body_len response_body_len status_code status_msg "
        "info_code info_msg tags username password proxied orig_fuids orig_filenames "
        "orig_mime_types resp_fuids resp_filenames resp_mime_types",
        "time string addr port addr port count string string string string string string "
        "string count count count string count string set[enum] string string set[string] "
        "vector[string] vector[string] vector[string] vector[string] vector[string] "
        "vector[string]",
    ),
    "ssl": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name "
        "resumed last_alert next_protocol established ssl_history cert_chain_fps "
        "client_cert_chain_fps sni_matches_cert",
        "time string addr port addr port string string string string bool string string bool "
        "string vector[string] vector[string] bool",
    ),
}


T0 = "1795392000.250000"  # 2026-11-23 00:00:00.25 UTC
SMTP_LINE: dict[str, str] = {
    "ts": T0,
    "uid": "C2",
    "id.orig_h": "192.0.2.10",
    "id.orig_p": "40001",
    "id.resp_h": "198.51.100.25",
    "id.resp_p": "25",
    "trans_depth": "2",
    "helo": "ws1.example.org",
    "mailfrom": "a@example.org",
    "rcptto": "b@example.net,c@example.net",
    "date": "Mon, 23 Nov 2026 00:00:00 +0000",
    "from": "A <a@example.org>",
    "to": "<b@example.net>",
    "msg_id": "<1@example.org>",
    "subject": "Offer",
    "last_reply": "250 2.0.0 Ok",
    "user_agent": "The Bat! (v9.4.2)",
    "tls": "T",
}
"""One smtp.log line, by field."""
SOCKS_LINE: dict[str, str] = {
    "ts": T0,
    "id.orig_h": "192.0.2.10",
    "id.orig_p": "40002",
    "id.resp_h": "198.51.100.80",
    "id.resp_p": "1080",
    "version": "5",
    "user": "bob",
    "password": "alice",
    "status": "succeeded",
    "request.name": "www.example.com",
    "request_p": "80",
    "bound.host": "198.51.100.80",
    "bound_p": "55951",
}
"""One socks.log line, by field."""


def fields_of(log: str) -> list[str]:
    """The column names Zeek writes for ``log``."""
    return LOGS[log][0].split()


def tsv_header(
    log: str,
    *,
    separator: str = "\t",
    set_separator: str = ",",
    empty: str = "(empty)",
    unset: str = "-",
    fields: Sequence[str] | None = None,
) -> str:
    """The header block Zeek's ASCII writer opens a log with."""
    names = list(fields) if fields is not None else fields_of(log)
    types = LOGS[log][1].split() if fields is None else ["string"] * len(names)
    escaped = "".join(f"\\x{ord(c):02x}" for c in separator)
    s = separator
    return (
        f"#separator {escaped}\n#set_separator{s}{set_separator}\n#empty_field{s}{empty}\n"
        f"#unset_field{s}{unset}\n#path{s}{log}\n#open{s}2026-11-23-00-00-00\n"
        f"#fields{s}{s.join(names)}\n#types{s}{s.join(types)}\n"
    )


def tsv_line(
    log: str, values: Mapping[str, str], *, separator: str = "\t", unset: str = "-"
) -> str:
    """One data line: ``values`` by column name, every other column unset."""
    return separator.join(values.get(name, unset) for name in fields_of(log)) + "\n"


def write_tsv(path: Path, log: str, rows: Iterable[Mapping[str, str]], **header: str) -> Path:
    """Write a complete TSV log (header, rows, #close) and return its path."""
    separator = header.get("separator", "\t")
    unset = header.get("unset", "-")
    body = "".join(tsv_line(log, row, separator=separator, unset=unset) for row in rows)
    path.write_text(
        tsv_header(log, **header) + body + f"#close{separator}2026-11-24-00-00-00\n",
        encoding="utf-8",
    )
    return path


def write_json(path: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write a JSON-lines log the way LogAscii::use_json=T does (unset fields left out)."""
    lines = [json.dumps(dict(row), separators=(",", ":")) + "\n" for row in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def gzip_copy(source: Path, target: Path) -> Path:
    """Write ``source`` gzip-compressed to ``target``."""
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


def split_items(items: Iterable[Item]) -> tuple[list[Record], list[ReadWarning]]:
    """Separate records from warnings."""
    records: list[Record] = []
    warnings: list[ReadWarning] = []
    for item in items:
        if isinstance(item, ReadWarning):
            warnings.append(item)
        else:
            records.append(item)
    return records, warnings
