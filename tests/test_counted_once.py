"""One message, counted once: a proxy's own copy of a tunnelled message is marked, not recounted.

A mail sent through a proxy is read twice in a capture: inside the client's tunnel
(``via_proxy``) and on the proxy's own connection to the server. The second is marked
``relayed_for`` the client, and clusters, the daily series, the report's mail software and
the mail findings count the message once, as the client's.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rolecall.inventory.store import Store
from rolecall.probes.records import Observation
from rolecall.reports.queries import mail_software
from tests.cli_helpers import cli_json, ingest
from tests.data_paths import REPO
from tests.findings_helpers import send_mail, write_config
from tests.pcap_helpers import (
    aiosmtpd_server,
    loopback_capture,
    microsocks,
    of_type,
    read_all,
    session,
    smtp,
    smtp_turns,
    write_pcap,
)
from tests.test_pcap_socks import v5_connect

NET = "127.0.124.0/24"
BOT, DIRECT, PROXY, SERVER = "127.0.124.10", "127.0.124.11", "127.0.124.30", "127.0.124.200"
CONFIG = """
[scope]
allow = ["127.0.124.0/25"]
"""
BAT = "The Bat! (v9.1.18) Home"
DEMO_CAPTURE = REPO / "orchestrator" / "demo" / "data" / "demo.pcap"


def cluster_total(capsys: pytest.CaptureFixture[str], db: Path) -> int:
    """How many messages `mail cluster subject` counts (one subject per message)."""
    rows = cli_json(capsys, db, None, "mail", "cluster", "subject", "--on", "client")
    return sum(int(row["messages"]) for row in rows)


def smtp_clients_on(capsys: pytest.CaptureFixture[str], db: Path, day: str) -> int:
    """The smtp_clients series' value on one day."""
    points = cli_json(
        capsys, db, None, "history", "show", "smtp_clients", "--days", "1", "--until", day
    )
    return int(points[0]["value"])


def test_mail_through_microsocks_is_one_message_of_the_client(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, CONFIG)
    with (
        aiosmtpd_server(SERVER) as (host, port, received),
        microsocks(PROXY) as proxy,
        loopback_capture(tmp_path / "proxied.pcap", NET) as pcap,
    ):
        send_mail(BOT, (host, port), ["victim@far.test"], mailer=BAT, proxy=proxy)
        send_mail(DIRECT, (host, port), ["friend@far.test"])
    assert len(received) == 2
    ingest(capsys, db, config, pcap)

    rows = cli_json(capsys, db, config, "export", "smtp")
    assert sorted((r["client"], r["via_proxy"], r["relayed_for"]) for r in rows) == [
        (BOT, PROXY, ""),
        (DIRECT, "", ""),
        (PROXY, "", BOT),  # the proxy's own copy, on its connection to the server
    ]
    assert cluster_total(capsys, db) == 2
    by_client = cli_json(capsys, db, None, "mail", "cluster", "client", "--on", "subject")
    assert sorted(row["client"] for row in by_client) == [BOT, DIRECT]
    day = rows[0]["ts"][:10]
    assert smtp_clients_on(capsys, db, day) == 2  # the bot and the direct sender, not the proxy

    store = Store.open(str(db))
    try:
        with store.read("read the mail software") as connection:
            now = datetime.now(UTC)
            seen = mail_software(connection, now - timedelta(days=1), now + timedelta(days=1), 10)
    finally:
        store.close()
    assert [(s.user_agent, s.messages, [c for c, _ in s.clients]) for s in seen] == [
        ("Microsoft Outlook 16.0", 1, [DIRECT]),
        (BAT, 1, [BOT]),
    ]

    found = {
        (f["rule"], f["address"]): str(f["summary"])
        for f in cli_json(capsys, db, config, "findings", "list")
    }
    assert PROXY in found["mail-via-proxy", BOT]
    assert "SOCKS proxy" in found["mail-via-proxy", BOT]
    assert f"relays mail for {BOT}" in found["mail-via-proxy", PROXY]
    # The bulk mailer is the bot's: the proxy only carried its message.
    assert ("mass-mailer-software", BOT) in found
    assert ("mass-mailer-software", PROXY) not in found
    # The bot did not go straight outside; the proxy did, and says whose mail it was.
    assert ("direct-external-smtp", BOT) not in found
    assert f"relays mail for {BOT}" in found["direct-external-smtp", PROXY]
    assert ("direct-external-smtp", DIRECT) in found
    # A SOCKS proxy sending SMTP is unexpected; its finding says it relays the bot's mail.
    assert f"relays mail for {BOT}" in found["unexpected-mail-client", PROXY]
    inventory = {
        r["address"]: r["roles"] for r in cli_json(capsys, db, config, "export", "inventory")
    }
    assert "smtp-client" in inventory[PROXY]  # it is one on the wire


@pytest.mark.parametrize("first", ["connection", "request"])
def test_egress_is_marked_whichever_is_seen_first(tmp_path: Path, first: str) -> None:
    """The proxy's SYN before the request is complete (as proxies do) or after its reply."""
    client, proxy, mail_server = "10.1.0.7", "10.1.0.1", "10.9.9.25"
    mail = smtp_turns(
        ("EHLO bot\n", "250 ok\n"),
        ("MAIL FROM:<spam@example.org>\n", "250 ok\n"),
        ("RCPT TO:<victim@example.net>\n", "250 ok\n"),
        ("DATA\n", "354 go\n"),
        ("Subject: buy\n\nx\n.\n", "250 queued\n"),
        ("QUIT\n", "221 bye\n"),
    )
    tunnel = session(v5_connect(mail_server, 25) + mail, client, 40000, proxy, 1080)
    # packets: SYN, SYN-ACK, ACK, greeting, method, request, reply, ...
    after = tunnel.packets[5][0] if first == "connection" else tunnel.packets[6][0]
    egress = session(mail, proxy, 61000, mail_server, 25, start=after + 0.0001)
    packets = sorted(tunnel.packets + egress.packets, key=lambda p: p[0])
    items = read_all(write_pcap(tmp_path / "t.pcap", packets))
    assert sorted((t.client, t.via_proxy, t.relayed_for) for t in smtp(items)) == [
        (proxy, "", client),
        (client, proxy, ""),
    ]


TUNNEL_MAIL = smtp_turns(
    ("EHLO bot\n", "250 ok\n"),
    ("MAIL FROM:<spam@example.org>\n", "250 ok\n"),
    ("RCPT TO:<victim@example.net>\n", "250 ok\n"),
    ("DATA\n", "354 go\n"),
    ("Subject: buy\n\nx\n.\n", "250 queued\n"),
    ("QUIT\n", "221 bye\n"),
)


@pytest.mark.parametrize("kind", ["socks", "connect"])
def test_a_tunnel_whose_grant_was_not_seen_leaves_the_proxy_copy_counted(
    tmp_path: Path, kind: str
) -> None:
    """The proxy's reply lost (gap): the tunnel was not read, so the egress copy is the count."""
    client, proxy, mail_server = "10.1.0.7", "10.1.0.1", "10.9.9.25"
    if kind == "socks":
        handshake = v5_connect(mail_server, 25)
        port, reply_at = 1080, 6  # SYN, SYN-ACK, ACK, method, choice, request, reply
    else:
        request = f"CONNECT {mail_server}:25 HTTP/1.1\r\n\r\n".encode()
        handshake = [(True, request), (False, b"HTTP/1.1 200 Connection established\r\n\r\n")]
        port, reply_at = 3128, 4  # SYN, SYN-ACK, ACK, request, reply
    tunnel = session(handshake + TUNNEL_MAIL, client, 40000, proxy, port)
    del tunnel.packets[reply_at]  # the segment carrying the grant never reached the capture
    egress = session(TUNNEL_MAIL, proxy, 61000, mail_server, 25, start=tunnel.packets[4][0])
    packets = sorted(tunnel.packets + egress.packets, key=lambda p: p[0])
    items = read_all(write_pcap(tmp_path / "lost.pcap", packets))
    assert [(t.client, t.via_proxy, t.relayed_for) for t in smtp(items)] == [(proxy, "", "")]
    links = [o for o in of_type(items, Observation) if o.kind == "proxy-egress"]
    assert [(o.address, o.value) for o in links] == [(proxy, client)]  # still seen


def test_an_unlinked_connection_of_the_proxy_is_its_own_mail(tmp_path: Path) -> None:
    """A proxy's SMTP to a server nobody asked it for is not marked."""
    mail = smtp_turns(("MAIL FROM:<ops@example.org>\n", "250 ok\n"), ("QUIT\n", "221 bye\n"))
    tunnel = session(v5_connect("10.9.9.25", 25), "10.1.0.7", 40000, "10.1.0.1", 1080)
    own = session(mail, "10.1.0.1", 61001, "10.9.9.99", 25, start=tunnel.packets[5][0])
    packets = sorted(tunnel.packets + own.packets, key=lambda p: p[0])
    (txn,) = smtp(read_all(write_pcap(tmp_path / "own.pcap", packets)))
    assert (txn.client, txn.relayed_for) == ("10.1.0.1", "")


def test_the_demo_capture_counts_six_messages(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The demo's recorded capture: 6 messages sent (one through the open proxy), 6 counted."""
    db = tmp_path / "demo.db"
    ingest(capsys, db, None, DEMO_CAPTURE)
    with sqlite3.connect(db) as connection:
        relayed = connection.execute(
            "SELECT client, relayed_for FROM smtp WHERE relayed_for != ''"
        ).fetchall()
        rows = connection.execute("SELECT count(*), min(ts) FROM smtp").fetchone()
    assert rows[0] == 7  # six messages, one of them read twice
    assert len(relayed) == 1
    assert cluster_total(capsys, db) == 6
    senders = {client for client, _ in relayed}
    clients = cli_json(capsys, db, None, "mail", "cluster", "client", "--on", "subject")
    assert not senders & {row["client"] for row in clients}
    assert smtp_clients_on(capsys, db, str(rows[1])[:10]) == len(clients)
