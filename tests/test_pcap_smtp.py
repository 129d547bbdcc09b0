"""SMTP transcripts in synthetic captures: transactions as Zeek's smtp.log would log them."""

from __future__ import annotations

import json
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall.probes.passive.pcap.smtp import SmtpStream
from rolecall.probes.passive.pcap.stream import PcapSettings, StreamContext
from rolecall.probes.records import Observation, SmtpTransaction
from tests.cli_helpers import run_cli
from tests.pcap_helpers import (
    read_all,
    session,
    smtp,
    smtp_turns,
    tcp_segment,
    warnings,
    write_pcap,
)

MESSAGE = (
    "From: Bulk <bulk@example.org>\n"
    "To: a@example.net, b@example.net\n"
    "Subject: =?UTF-8?B?SGVsbG8gd29ybGQ=?=\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
    "Message-ID: <1@example.org>\n"
    "X-Mailer: The Bat! (v3.5)\n"
    "\n"
    "body line\n"
    "..a dot-stuffed line\n"
    ".\n"
)


def test_plain_transaction(tmp_path: Path) -> None:
    """A classic session gives one transaction with envelope, headers and last reply."""
    turns = smtp_turns(
        ("EHLO client.example\n", "250-mx.example\n250-PIPELINING\n250 8BITMIME\n"),
        ("MAIL FROM:<bulk@example.org> SIZE=100\n", "250 OK\n"),
        ("RCPT TO:<a@example.net>\n", "250 OK\n"),
        ("RCPT TO:<b@example.net>\n", "250 OK\n"),
        ("DATA\n", "354 go ahead\n"),
        (MESSAGE, "250 2.0.0 queued as ABC\n"),
        ("QUIT\n", "221 bye\n"),
    )
    pcap = write_pcap(tmp_path / "s.pcap", session(turns, sport=2525).packets)
    (t,) = smtp(read_all(pcap))
    assert (t.client, t.client_port, t.server, t.server_port) == (
        "10.0.0.5",
        40000,
        "10.0.0.25",
        2525,
    )
    assert t.helo == "client.example"
    assert t.mail_from == "bulk@example.org"
    assert t.rcpt_to == ("a@example.net", "b@example.net")
    # Zeek logs encoded words as sent (it does not decode RFC 2047), and so do we.
    assert t.subject == "=?UTF-8?B?SGVsbG8gd29ybGQ=?="
    assert t.from_ == "Bulk <bulk@example.org>"
    assert t.to == ("a@example.net", "b@example.net")
    assert t.date == "Mon, 1 Jan 2024 10:00:00 +0000"
    assert t.msg_id == "<1@example.org>"
    assert t.user_agent == "The Bat! (v3.5)"
    assert t.last_reply == "250 2.0.0 queued as ABC"
    assert t.trans_depth == 1
    assert not t.tls
    assert t.source == "pcap"


def test_pipelining_two_messages_and_refused_recipient(tmp_path: Path) -> None:
    """Pipelined commands are matched to replies in order; a 550 at RCPT is a refusal."""
    msg2 = "Subject: second\nUser-Agent: Mutt/2.2\n\nx\n.\n"
    turns = smtp_turns(
        ("EHLO c\n", "250-mx\n250 PIPELINING\n"),
        (
            "MAIL FROM:<s@example.org>\nRCPT TO:<ok@example.net>\nRCPT TO:<no@far.example>\nDATA\n",
            "250 OK\n250 OK\n550 5.7.1 Relaying denied\n354 go\n",
        ),
        (MESSAGE + "MAIL FROM:<s@example.org>\nRCPT TO:<ok2@example.net>\nDATA\n", ""),
        ("", "250 first queued\n250 OK\n250 OK\n354 go\n"),
        (msg2 + "QUIT\n", "250 second queued\n221 bye\n"),
    )
    items = read_all(write_pcap(tmp_path / "p.pcap", session(turns).packets))
    first, second = smtp(items)
    assert first.rcpt_to == ("ok@example.net",)
    assert first.refused_rcpt == ("no@far.example",)
    assert first.last_reply == "250 first queued"
    assert first.trans_depth == 1
    assert second.rcpt_to == ("ok2@example.net",)
    assert second.subject == "second"
    assert second.user_agent == "Mutt/2.2"
    assert second.last_reply == "250 second queued"
    assert second.trans_depth == 2
    (refusal,) = [o for o in items if isinstance(o, Observation)]
    assert (refusal.kind, refusal.address, refusal.value) == (
        "smtp-rcpt-refused",
        "10.0.0.5",
        "no@far.example",
    )
    assert json.loads(refusal.detail)["reply"] == "550 5.7.1 Relaying denied"


def test_bdat_chunking(tmp_path: Path) -> None:
    """BDAT chunks carry the message; BDAT LAST ends the transaction."""
    head = b"Subject: chunked\r\nX-User-Agent: Chunker 1\r\n\r\nbody"
    tail = b" more body\r\n.\r\n"  # in BDAT a lone dot is data, not an end marker
    turns = smtp_turns(
        ("EHLO c\n", "250 CHUNKING\n"),
        ("MAIL FROM:<a@b.example>\n", "250 OK\n"),
        ("RCPT TO:<c@d.example>\n", "250 OK\n"),
    )
    turns += [
        (True, b"BDAT %d\r\n" % len(head) + head),
        (False, b"250 chunk ok\r\n"),
        (True, b"BDAT %d LAST\r\n" % len(tail) + tail),
        (False, b"250 message ok\r\n"),
        (True, b"QUIT\r\n"),
        (False, b"221 bye\r\n"),
    ]
    (t,) = smtp(read_all(write_pcap(tmp_path / "b.pcap", session(turns).packets)))
    assert t.subject == "chunked"
    assert t.user_agent == "Chunker 1"
    assert t.last_reply == "250 message ok"


def test_starttls_stops_parsing(tmp_path: Path) -> None:
    """After STARTTLS is accepted the transaction is tls and nothing after it is read."""
    turns = smtp_turns(
        ("EHLO c\n", "250-mx\n250 STARTTLS\n"),
        ("STARTTLS\n", "220 2.0.0 Ready to start TLS\n"),
    )
    turns += [(True, b"\x16\x03\x01\x00\x05hello"), (False, b"\x16\x03\x03garbage")]
    (t,) = smtp(read_all(write_pcap(tmp_path / "t.pcap", session(turns).packets)))
    assert t.tls
    assert t.helo == "c"
    assert t.last_reply == "220 2.0.0 Ready to start TLS"


def test_reading_mail_is_not_smtp(tmp_path: Path) -> None:
    """POP3 RETR and IMAP FETCH carry X-Mailer headers but are mail being read, not sent."""
    header = "Subject: hi\r\nX-Mailer: The Bat!\r\n\r\nbody\r\n"
    pop3 = [
        (False, b"+OK POP3 ready\r\n"),
        (True, b"USER u\r\n"),
        (False, b"+OK\r\n"),
        (True, b"RETR 1\r\n"),
        (False, b"+OK message follows\r\n" + header.encode() + b".\r\n"),
    ]
    imap = [
        (False, b"* OK IMAP4rev1 ready\r\n"),
        (True, b"a1 FETCH 1 BODY[]\r\n"),
        (False, b"* 1 FETCH (BODY[] {%d}\r\n" % len(header) + header.encode() + b")\r\n"),
    ]
    packets = session(pop3, sport=110).packets + session(imap, cport=40001, sport=143).packets
    items = read_all(write_pcap(tmp_path / "r.pcap", packets))
    assert smtp(items) == []


def test_ftp_banner_is_not_smtp(tmp_path: Path) -> None:
    """An FTP server also greets with 220; its session gives no SMTP transaction."""
    turns = [
        (False, b"220 ProFTPD ready\r\n"),
        (True, b"USER anonymous\r\n"),
        (False, b"331 ok\r\n"),
    ]
    turns += [(True, b"PASS x\r\n"), (False, b"230 in\r\n")]
    assert smtp(read_all(write_pcap(tmp_path / "f.pcap", session(turns, sport=21).packets))) == []


def test_smtp_on_any_port_without_banner(tmp_path: Path) -> None:
    """A capture that starts after the banner is still recognised from EHLO, on port 8080."""
    turns = [(True, b"EHLO x\r\n"), (False, b"250 ok\r\n"), (True, b"MAIL FROM:<m@x.example>\r\n")]
    turns += [(False, b"250 ok\r\n"), (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]
    pcap = write_pcap(tmp_path / "n.pcap", session(turns, sport=8080, handshake=False).packets)
    (t,) = smtp(read_all(pcap))
    assert (t.server_port, t.mail_from) == (8080, "m@x.example")


def test_non_utf8_headers_kept_as_escapes(tmp_path: Path) -> None:
    """Undecodable header bytes stay visible as \\xNN escapes."""
    turns = smtp_turns(("EHLO c\n", "250 ok\n"), ("MAIL FROM:<a@b>\n", "250 ok\n"))
    turns += [
        (True, b"RCPT TO:<c@d>\r\nDATA\r\n"),
        (False, b"250 ok\r\n354 go\r\n"),
        (True, b"Subject: caf\xe9 \xff\r\nX-Mailer: M\xfcller\r\n\r\nbody\r\n.\r\n"),
        (False, b"250 ok\r\n"),
    ]
    (t,) = smtp(read_all(write_pcap(tmp_path / "u.pcap", session(turns).packets)))
    assert t.subject == "caf\\xe9 \\xff"
    assert t.user_agent == "M\\xfcller"


def test_huge_single_line_is_cut(tmp_path: Path) -> None:
    """A 100 MB line without end is cut at the line limit and reported; memory stays bounded."""
    start = smtp_turns(("EHLO c\n", "250 ok\n"))
    tcp = session(start, close=False)
    chunk = b"A" * 65000

    def packets() -> Iterator[tuple[float, bytes]]:
        yield from tcp.packets
        yield (
            tcp.ts,
            tcp_segment(
                tcp.client, 40000, tcp.server, 25, tcp.cseq, tcp.sseq, 0x18, b"MAIL FROM:<"
            ),
        )
        seq = tcp.cseq + 11
        for n in range(1540):  # 100 MB
            yield (
                tcp.ts + n * 1e-4,
                tcp_segment(tcp.client, 40000, tcp.server, 25, seq, tcp.sseq, 0x10, chunk),
            )
            seq += len(chunk)

    pcap = write_pcap(tmp_path / "h.pcap", packets())
    tracemalloc.start()
    try:
        items = read_all(pcap, max_line=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12_000_000
    (t,) = smtp(items)  # the command was sent; only its first 4096 bytes are kept
    assert t.mail_from.startswith("AAAA")
    assert len(t.mail_from) < 4096
    assert any("longer than 4096" in w.message for w in warnings(items))


def _parse_seconds(lines: int) -> float:
    """Seconds one SmtpStream takes over a single feed of ``lines`` short header lines."""
    ctx = StreamContext("10.0.0.5", 40000, "10.0.0.25", 25, "timing.pcap")
    stream = SmtpStream(ctx, PcapSettings())
    stream.feed(False, b"220 mx.example ESMTP\r\n", 1.0)
    head = b"EHLO bot\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    feed = head + b"X-Pad: 1234567\r\n" * lines + b"\r\nbody\r\n.\r\nQUIT\r\n"
    started = time.perf_counter()
    items = stream.feed(True, feed, 2.0)
    items += stream.feed(False, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", 3.0)
    (txn,) = [item for item in items + stream.finish(4.0) if isinstance(item, SmtpTransaction)]
    assert txn.rcpt_to == ("c@d.example",)
    return time.perf_counter() - started


def test_a_feed_of_many_short_lines_is_read_in_linear_time() -> None:
    """2 MB of short lines in one feed: 4x the lines of the baseline take well under 16x."""
    baseline = min(_parse_seconds(32_768) for _ in range(3))  # 512 KB
    big = _parse_seconds(131_072)  # 2 MB
    assert big < 6 * baseline + 0.05, (big, baseline)


def test_a_70_kb_subject_is_the_traffic_s_not_damage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A sound capture of a hostile 70 KB Subject: one warning, the mail stored, exit 0."""
    subject = "S" * 70_000
    turns = smtp_turns(
        ("EHLO bot\n", "250 ok\n"),
        ("MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\nDATA\n", "250 ok\n250 ok\n354 go\n"),
        (f"Subject: {subject}\nX-Mailer: Bulk\n\nbody\n.\n", "250 queued\n"),
        ("QUIT\n", "221 bye\n"),
    )
    pcap = write_pcap(tmp_path / "long.pcap", session(turns).packets)
    db = tmp_path / "inventory.db"
    result = run_cli(capsys, "--db", str(db), "ingest", "pcap", str(pcap))
    assert result.code == 0, result.err
    shown = [line for line in result.err.splitlines() if "longer than" in line]
    assert len(shown) == 1, result.err
    assert "1 line(s) longer than 4096 bytes were cut" in shown[0]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT length(subject), user_agent FROM smtp").fetchall()
    assert rows == [(4096 - len("Subject: "), "Bulk")]
