"""Probes against hostile servers on loopback: a reply that cannot be matched gives no verdict.

A server that floods, pipelines, mixes codes or sends endless lines must never be
called an open relay (or an anonymous FTP): the probe gives up with a reason.
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolecall.probes.active.connection import ReplyError, ReplyLimits, parse_reply, reply_code
from rolecall.probes.active.driver import run_probes
from rolecall.probes.active.smtp import OPEN_RELAY, SmtpSession, relay_verdict
from rolecall.probes.records import Record
from tests.bad_peers import Script, scripted_server
from tests.daemon_helpers import free_port
from tests.probe_helpers import (
    FAST,
    LoopbackGate,
    RelayPolicy,
    detail_of,
    mail_server,
    observed,
    roles_of,
)

LOOPBACK = "127.0.0.1"
MEGABYTE_LINE = b"x" * 1_000_000


def probe(script: Script) -> tuple[list[Record], int, float]:
    """Run the probe driver against a scripted server; return records, port and seconds taken."""
    with scripted_server(script, LOOPBACK) as port:
        started = time.monotonic()
        records = run_probes([(LOOPBACK, port)], LoopbackGate(), FAST)
        return records, port, time.monotonic() - started


def assert_no_verdict(records: list[Record], port: int, script: Script, reason: str) -> None:
    """The port is SMTP, its relay test has no verdict for ``reason``, and DATA never went out."""
    assert observed(records, port, "protocol") == ["smtp"]
    assert observed(records, port, "smtp-relay") == ["inconclusive"]
    detail = detail_of(records, port, "smtp-relay")
    assert detail["no_verdict"].startswith("desynchronised reply: ")
    assert re.search(reason, detail["no_verdict"]), detail["no_verdict"]
    assert [step["command"] for step in detail["steps"][-2:]] == ["RSET", "QUIT"]
    assert "smtp-open-relay" not in roles_of(records, port)
    assert "DATA" not in script.received


def test_ehlo_flood_of_100000_lines_is_no_verdict_within_the_read_timeout() -> None:
    """EHLO answered by 100,000 "250-" lines then "250 ok", all else 250: not an open relay."""
    flood = b"250-flood.test\r\n" * 100_000 + b"250 ok\r\n"
    script = Script(replies={"EHLO": flood})
    records, port, seconds = probe(script)
    assert_no_verdict(records, port, script, r"reply to EHLO: reply longer than 512 lines")
    assert seconds < FAST.read_timeout
    assert "MAIL" not in script.received
    assert "RCPT" not in script.received


def test_replies_sent_ahead_of_the_commands_are_no_verdict() -> None:
    """A server that sends "250 ok" replies before any command was written: no verdict."""
    script = Script(greeting=b"220 hostile.test ESMTP\r\n" + b"250 ok\r\n" * 3)
    records, port, _ = probe(script)
    assert_no_verdict(records, port, script, r"unasked bytes arrived before EHLO was sent")
    assert "EHLO" not in script.received


def test_two_replies_to_one_command_are_no_verdict() -> None:
    """Every command answered twice (pipelined extras): the extra reply is not the next one's."""
    script = Script(otherwise=b"250 ok\r\n250 ok\r\n")
    records, port, _ = probe(script)
    assert_no_verdict(records, port, script, r"unasked bytes followed the reply to EHLO")
    assert "RCPT" not in script.received


@pytest.mark.parametrize(
    ("verb", "reply", "reason"),
    [
        ("EHLO", b"250-hostile.test\r\n550-no\r\n250 ok\r\n", r"line 2 does not carry .* 250"),
        ("RCPT", b"550-denied\r\n250 ok\r\n", r"reply to RCPT TO: line 2 does not carry .* 550"),
        ("RCPT", b"250ok\r\n", r"reply to RCPT TO: malformed reply code"),
        ("RCPT", b"2500 accepted\r\n", r"malformed reply code"),
        ("MAIL", b"250-ok\r\n\r\n250 ok\r\n", r"reply to MAIL FROM: line 2 does not carry"),
    ],
)
def test_malformed_or_mixed_code_replies_are_no_verdict(
    verb: str, reply: bytes, reason: str
) -> None:
    """Mixed codes in one reply, or a malformed code, give no verdict (the old probe said open)."""
    script = Script(replies={verb: reply})
    records, port, _ = probe(script)
    assert_no_verdict(records, port, script, reason)


@pytest.mark.parametrize("verb", ["EHLO", "RCPT"])
def test_a_reply_line_of_one_megabyte_is_no_verdict(verb: str) -> None:
    """A 1 MB reply line is not read to its end nor cut and believed: no verdict, in time."""
    script = Script(replies={verb: b"250" + MEGABYTE_LINE + b"\r\n250 ok\r\n"})
    records, port, seconds = probe(script)
    assert_no_verdict(records, port, script, r"reply line longer than 2048 bytes")
    assert seconds < FAST.read_timeout


def test_a_real_open_relay_is_still_found_open() -> None:
    """aiosmtpd accepting a foreign recipient is still an open relay, read reply by reply."""
    port = free_port(LOOPBACK)
    with mail_server(LOOPBACK, port, RelayPolicy()) as server:
        records = run_probes([(LOOPBACK, port)], LoopbackGate(), FAST)
    assert observed(records, port, "smtp-relay") == ["open-relay"]
    assert "no_verdict" not in detail_of(records, port, "smtp-relay")
    assert server.log.commands == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]


def test_a_real_closed_relay_is_still_refused() -> None:
    """aiosmtpd refusing foreign recipients is still relay-refused."""
    port = free_port(LOOPBACK)
    with mail_server(LOOPBACK, port, RelayPolicy(local_domain="corp.test")) as server:
        records = run_probes([(LOOPBACK, port)], LoopbackGate(), FAST)
    assert observed(records, port, "smtp-relay") == ["relay-refused"]
    assert "DATA" not in server.log.commands


def test_ftp_login_reply_sent_ahead_is_not_anonymous_access() -> None:
    """An FTP server that sends "230 logged in" before USER was written: inconclusive."""
    script = Script(
        greeting=b"220 hostile FTP server ready\r\n230 logged in\r\n",
        otherwise=b"530 not logged in\r\n",
    )
    records, port, _ = probe(script)
    assert observed(records, port, "protocol") == ["ftp"]
    assert observed(records, port, "ftp-anonymous") == ["inconclusive"]
    assert "ftp-anonymous" not in roles_of(records, port)


class _EagerSocks(socketserver.BaseRequestHandler):
    """Answers the SOCKS5 greeting with no-auth plus a CONNECT "success" nobody asked for yet."""

    def handle(self) -> None:
        """Read the greeting, send both replies at once, then wait for the peer to leave."""
        self.request.settimeout(3.0)
        try:
            if self.request.recv(64):
                self.request.sendall(b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
            while self.request.recv(64):
                pass
        except OSError:
            return


@contextmanager
def eager_socks() -> Iterator[int]:
    """Run the eager SOCKS5 server on a free loopback port; yield the port."""
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _EagerSocks)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_socks5_reply_with_unasked_bytes_is_not_believed() -> None:
    """A method reply followed by a CONNECT reply before any CONNECT: not a SOCKS5 verdict."""
    with eager_socks() as port:
        records = run_probes([(LOOPBACK, port)], LoopbackGate(), FAST)
    assert observed(records, port, "protocol") == []
    assert observed(records, port, "socks5-auth") == []
    assert observed(records, port, "unclassified") == ["unrecognised reply"]


# The reply parser, fuzzed: it raises only ReplyError and returns only well-formed replies.

_WELL_FORMED = re.compile(rb"(?P<c>[1-5][0-5][0-9])(?:-[^\n]*\n(?P=c))*(?: [^\n]*|\r*)\n")
_FINAL = re.compile(r"[1-5][0-5][0-9](?: |$)")
_PIECES = st.sampled_from(
    [
        *(b"250", b"550", b"251", b"25O", b"2500", b"099", b"650", b" ", b"-", b"ok"),
        *(b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"\x1b[2J", b"250-", b"250 ", b"x" * 300),
    ]
)
_STREAMS = st.one_of(
    st.binary(max_size=400),
    st.lists(_PIECES, max_size=60).map(b"".join),
)
_LIMITS = ReplyLimits(max_lines=8, max_bytes=512, max_line_bytes=128)


@settings(max_examples=600, deadline=None)
@given(data=_STREAMS, strict=st.booleans())
def test_reply_parser_fuzz_raises_only_its_error_and_returns_only_whole_replies(
    data: bytes, strict: bool
) -> None:
    """Any bytes: ReplyError, "not all there yet", or one reply within its bounds."""
    try:
        parsed = parse_reply(data, _LIMITS, strict=strict)
    except ReplyError:
        return
    if parsed is None:
        return
    lines, used = parsed
    assert 0 < used <= min(len(data), _LIMITS.max_bytes)
    assert 0 < len(lines) <= _LIMITS.max_lines
    assert lines[-1][:3] == lines[0][:3]
    assert reply_code(lines) == int(lines[0][:3])
    if strict:
        assert _WELL_FORMED.fullmatch(data[:used]), data[:used]


@settings(max_examples=600, deadline=None)
@given(data=_STREAMS)
def test_relay_verdict_fuzz_is_never_open_from_a_malformed_reply(data: bytes) -> None:
    """An open-relay verdict needs RCPT's reply to parse whole as a 250/251 reply."""
    try:
        parsed = parse_reply(data, _LIMITS, strict=True)
    except ReplyError:
        parsed = None
    raw = data.decode("utf-8", errors="replace").split("\n")
    rcpt = parsed[0] if parsed is not None else raw
    session = SmtpSession(banner=["220 ok"], implicit_tls=False)
    session.steps = [
        {"command": "MAIL FROM:<a@example.com>", "reply": ["250 ok"]},
        {"command": "RCPT TO:<b@example.net>", "reply": rcpt},
    ]
    if relay_verdict(session) == OPEN_RELAY:
        assert _FINAL.match(rcpt[-1])
        assert parsed is not None or bool(re.fullmatch(r"25[01](?: .*)?", raw[-1]))
    session.desync = "desynchronised reply: fuzz"
    assert relay_verdict(session) != OPEN_RELAY
