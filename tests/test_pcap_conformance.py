"""Conformance: the pcap reader's records against the logs Zeek wrote for the same captures."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rolecall.probes.records import (
    Observation,
    ReadWarning,
    SmtpTransaction,
    SocksRequest,
    record_fields,
)
from tests.data_paths import CONFORMANCE
from tests.pcap_helpers import of_type, read_all, smtp, socks, warnings


def zeek_log(path: Path) -> list[dict[str, str]]:
    """Read a Zeek TSV log into dicts (unset and empty fields as "")."""
    fields: list[str] = []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            values = ["" if v in ("-", "(empty)") else v for v in line.split("\t")]
            rows.append(dict(zip(fields, values, strict=True)))
    return rows


def zeek_set(value: str) -> set[str]:
    """A Zeek set/vector field as a Python set."""
    return set(value.split(",")) if value else set()


def smtp_key(t: SmtpTransaction) -> tuple[str, int]:
    """Order transactions as Zeek's rows are paired with them."""
    return t.client, t.client_port


@pytest.mark.parametrize("case", ["smtp-basic", "smtp-starttls"])
def test_smtp_matches_zeek(case: str) -> None:
    """Every SMTP transaction Zeek logged is found with the same fields."""
    items = read_all(CONFORMANCE / case / "trace.pcap")
    ours = {smtp_key(t): t for t in smtp(items)}
    theirs = zeek_log(CONFORMANCE / case / "smtp.log")
    assert len(ours) == len(theirs)
    assert not warnings(items)
    for row in theirs:
        assert_same_as_zeek(ours[(row["id.orig_h"], int(row["id.orig_p"]))], row)


def assert_same_as_zeek(t: SmtpTransaction, row: dict[str, str]) -> None:
    """One transaction has every field Zeek logged in its smtp.log row."""
    assert t.source == "pcap"
    assert t.client == row["id.orig_h"]
    assert t.client_port == int(row["id.orig_p"])
    assert t.server == row["id.resp_h"]
    assert t.server_port == int(row["id.resp_p"])
    assert t.trans_depth == int(row["trans_depth"])
    assert t.helo == row["helo"]
    assert t.mail_from == row["mailfrom"]
    # Zeek's rcptto holds every recipient asked for; we split them into accepted and
    # refused (none were refused in these captures, so refused_rcpt must be empty).
    assert set(t.rcpt_to) | set(t.refused_rcpt) == zeek_set(row["rcptto"])
    assert t.refused_rcpt == ()
    assert t.subject == row["subject"]
    assert t.from_ == row["from"]
    assert set(t.to) == zeek_set(row["to"])
    assert t.date == row["date"]
    assert t.msg_id == row["msg_id"]
    assert t.user_agent == row["user_agent"]
    assert t.last_reply == row["last_reply"]
    assert t.tls == (row["tls"] == "T")
    assert t.via_proxy == ""


@pytest.mark.parametrize("case", ["socks-trace1", "socks-auth"])
def test_socks_matches_zeek(case: str) -> None:
    """Every SOCKS request Zeek logged is found with the same fields."""
    # socks-auth's log was written with Zeek's password capture on, so ours is on too.
    items = read_all(CONFORMANCE / case / "trace.pcap", capture_socks_password=True)
    ours = {(r.client, r.client_port): r for r in socks(items)}
    theirs = zeek_log(CONFORMANCE / case / "socks.log")
    assert len(ours) == len(theirs)
    for row in theirs:
        r: SocksRequest = ours[(row["id.orig_h"], int(row["id.orig_p"]))]
        assert r.source == "pcap"
        assert r.proxy == row["id.resp_h"]
        assert r.proxy_port == int(row["id.resp_p"])
        assert r.version == int(row["version"])
        assert r.user == row["user"]
        assert r.password == row["password"]
        assert r.status == row["status"]
        assert r.request_host == row["request.host"]
        assert r.request_name == row["request.name"]
        assert r.request_port == int(row["request_p"])
        assert r.bound_host == row["bound.host"]
        assert r.bound_port == int(row["bound_p"])


def test_socks_password_not_kept_by_default() -> None:
    """Without the setting, the password Zeek shows (capture on) is not recorded."""
    items = read_all(CONFORMANCE / "socks-auth" / "trace.pcap")
    (request,) = socks(items)
    assert request.user == "bob"
    assert request.password == ""


def test_socks_auth_egress_linked_to_client() -> None:
    """The proxy's own connection to the requested host is linked to the SOCKS client."""
    items = read_all(CONFORMANCE / "socks-auth" / "trace.pcap")
    links = [o for o in of_type(items, Observation) if o.kind == "proxy-egress"]
    assert [(o.address, o.port, o.value) for o in links] == [("192.168.0.1", 22, "192.168.0.2")]


def test_socks_tunnel_carries_http() -> None:
    """socks-trace1 tunnels HTTP: its Host is observed on the real client, via the proxy."""
    items = read_all(CONFORMANCE / "socks-trace1" / "trace.pcap")
    hosts = [o for o in of_type(items, Observation) if o.kind == "http-host"]
    assert [(o.address, o.value) for o in hosts] == [("10.0.0.55", "www.osnews.com")]


@pytest.mark.parametrize("case", ["smtp-basic", "smtp-starttls", "socks-trace1", "socks-auth"])
def test_every_record_is_from_pcap(case: str) -> None:
    """Every record names its source as "pcap"; times are aware UTC."""
    for item in read_all(CONFORMANCE / case / "trace.pcap"):
        if isinstance(item, ReadWarning):
            continue
        assert item.source == "pcap"
        for value in record_fields(item).values():
            if isinstance(value, datetime):
                assert value.utcoffset() == timedelta(0)
