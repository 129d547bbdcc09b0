"""RFC 3030 CHUNKING (BDAT) in captures: Zeek's cases, real Exim traffic, hostile chunks."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.data_paths import CHUNKING
from tests.mta_helpers import EXIM, chunking_exim
from tests.pcap_helpers import (
    loopback_capture,
    read_all,
    session,
    smtp,
    smtp_turns,
    warnings,
    write_pcap,
)
from tests.test_pcap_conformance import assert_same_as_zeek, zeek_log

NET = "127.0.197.0/24"
SERVER, CLIENT = "127.0.197.2", "127.0.197.10"
CASES = ["smtp-bdat", "smtp-bdat-pipeline"]
HUGE = 2**63

CLIENT_CONF = """\
primary_hostname = client.chunk.test
qualify_domain = chunk.test
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
host_lookup =
rfc1413_hosts =

begin routers

smarthost:
  driver = manualroute
  route_list = * {server}::{port}
  self = send
  transport = remote

begin transports

remote:
  driver = smtp
  interface = {client}
  allow_localhost
  hosts_try_chunking = *
"""
"""An Exim that delivers everything to the smarthost, with BDAT when it is offered."""


# Zeek's own captures and logs.


@pytest.mark.parametrize("case", CASES)
def test_chunking_matches_zeek(case: str) -> None:
    """Every transaction Zeek logged for a BDAT capture is found with the same fields."""
    items = read_all(CHUNKING / case / "trace.pcap")
    theirs = zeek_log(CHUNKING / case / "smtp.log")
    ours = {(t.client, t.client_port, t.trans_depth): t for t in smtp(items)}
    assert len(ours) == len(theirs) == len(smtp(items))
    assert not warnings(items)
    for row in theirs:
        key = (row["id.orig_h"], int(row["id.orig_p"]), int(row["trans_depth"]))
        assert_same_as_zeek(ours[key], row)
    assert all(t.subject and t.from_ and t.to for t in ours.values())


def _mail(row: dict[str, object]) -> tuple[object, ...]:
    """What a stored transaction says of the mail (not its time or where it came from)."""
    fields = ("trans_depth", "helo", "mail_from", "subject", "from", "date", "msg_id")
    return (
        *(row[name] for name in fields),
        *(row[name] for name in ("user_agent", "last_reply", "tls")),
        tuple(sorted(row["rcpt_to"])),  # type: ignore[call-overload]
        tuple(sorted(row["to"])),  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("case", CASES)
def test_zeek_log_of_chunked_mail_ingests_as_the_capture_does(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, case: str
) -> None:
    """`ingest zeek` of Zeek's smtp.log and `ingest pcap` of its capture store the same mail."""
    # Zeek's conformance logs mask their timestamps; give the log a time of its own.
    log = tmp_path / "smtp.log"
    text = (CHUNKING / case / "smtp.log").read_text(encoding="utf-8")
    log.write_text(text.replace("XXXXXXXXXX.XXXXXX", "1614850927.619537"), encoding="utf-8")
    base = ("--db", str(db_path))
    zeek = run_cli(capsys, *base, "ingest", "zeek", str(log))
    assert zeek.code == 0, zeek.err
    pcap = run_cli(capsys, *base, "ingest", "pcap", str(CHUNKING / case / "trace.pcap"))
    assert pcap.code == 0, pcap.err
    assert "warning" not in zeek.err + pcap.err
    rows = json.loads(run_cli(capsys, *base, "export", "smtp", "--format", "json").out)
    by_source = {
        source: sorted(_mail(row) for row in rows if row["source"] == source)
        for source in ("zeek", "pcap")
    }
    assert by_source["zeek"] == by_source["pcap"]
    assert len(by_source["pcap"]) == len(zeek_log(CHUNKING / case / "smtp.log"))


# Real traffic: Exim delivering to Exim, which offers CHUNKING.


@pytest.fixture
def client_root() -> Iterator[Path]:
    """A folder for the Exim client that its user can reach (pytest's tmp_path is root's only)."""
    with tempfile.TemporaryDirectory(prefix="rolecall-exim-") as folder:
        root = Path(folder)
        root.chmod(0o755)
        exim = pwd.getpwnam("Debian-exim")  # deliveries never run as root
        for sub in ("spool", "log"):
            (root / sub).mkdir()
            os.chown(root / sub, exim.pw_uid, exim.pw_gid)
        yield root


def exim_send(root: Path, port: int, sender: str, rcpts: list[str], message: bytes) -> None:
    """Deliver one message with a real Exim client, now, to the server on ``port``."""
    conf = root / "exim.conf"  # owned by root, as Exim demands of a -C file
    conf.write_text(CLIENT_CONF.format(root=root, server=SERVER, port=port, client=CLIENT))
    done = subprocess.run(
        [EXIM, "-C", str(conf), "-odi", "-f", sender, *rcpts],
        input=message,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    log = (root / "log" / "mainlog").read_text(errors="replace")
    assert " K C=" in log, log  # Exim's mark of a delivery made with CHUNKING


def test_exim_delivering_with_bdat(tmp_path: Path, client_root: Path) -> None:
    """A large message Exim sends in pipelined BDAT chunks gives its headers and envelope."""
    body = b"".join(b"line %d of a long body, padding padding\n" % i for i in range(4000))
    big = (
        b"From: Bulk Sender <bulk@chunk.test>\nTo: one@far.test, two@far.test\n"
        b"Subject: chunked from Exim\nX-Mailer: Exim chunk test 1\n"
        b"Message-ID: <big.1@chunk.test>\n\n" + body
    )
    small = b"Subject: second message\nFrom: solo@chunk.test\nUser-Agent: Mutt/2.2\n\nhi\n"
    with (
        chunking_exim(tmp_path / "server", SERVER) as port,
        loopback_capture(tmp_path / "x.pcap", NET),
    ):
        exim_send(client_root, port, "bulk@chunk.test", ["one@far.test", "two@far.test"], big)
        exim_send(client_root, port, "solo@chunk.test", ["three@far.test"], small)
    raw = (tmp_path / "x.pcap").read_bytes()
    assert b"250-CHUNKING" in raw
    assert b" LAST\r\n" in raw
    assert raw.count(b"BDAT ") >= 3  # the big message in two chunks at least, pipelined
    assert b"\r\nDATA\r\n" not in raw
    items = read_all(tmp_path / "x.pcap")
    assert not warnings(items)
    first, second = sorted(smtp(items), key=lambda t: t.ts)
    assert (first.client, first.server, first.server_port) == (CLIENT, SERVER, port)
    assert first.helo == "client.chunk.test"
    assert first.mail_from == "bulk@chunk.test"
    assert first.rcpt_to == ("one@far.test", "two@far.test")
    assert first.subject == "chunked from Exim"
    assert first.from_ == "Bulk Sender <bulk@chunk.test>"
    assert first.to == ("one@far.test", "two@far.test")
    assert first.msg_id == "<big.1@chunk.test>"
    assert first.user_agent == "Exim chunk test 1"
    assert first.date  # Exim adds the Date header
    assert first.last_reply.startswith("250 OK id=")
    assert (second.subject, second.from_, second.user_agent) == (
        "second message",
        "solo@chunk.test",
        "Mutt/2.2",
    )
    assert second.rcpt_to == ("three@far.test",)
    assert second.last_reply.startswith("250 OK id=")
    assert second.last_reply != first.last_reply


# Written to RFC 3030: pipelining, split headers, binary chunks, BDAT 0 LAST.


def _bdat(data: bytes, last: bool = False) -> bytes:
    """A BDAT command with its chunk."""
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def _chunked_session(
    client_bytes: bytes, replies: bytes, segment: int = 1400
) -> list[tuple[float, bytes]]:
    """Packets of an SMTP session: EHLO, then everything the client pipelines, then replies."""
    turns = smtp_turns(("EHLO c.example\n", "250-mx\n250-PIPELINING\n250 CHUNKING\n"))
    turns += [(True, client_bytes), (False, replies), (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]
    return session(turns, segment=segment).packets


def test_pipelined_chunks_with_headers_split_across_them(tmp_path: Path) -> None:
    """Two messages pipelined in one burst, cut into small packets, headers split mid-line."""
    client = (
        b"MAIL FROM:<a@one.example> BODY=BINARYMIME\r\nRCPT TO:<b@two.example>\r\n"
        + _bdat(b"Subject: split ac")
        + _bdat(b"ross chunks\r\nFrom: A <a@one.e")
        + _bdat(b"xample>\r\nTo: b@two.example\r\nX-Mailer: Chunky 2\r\n\r\nbody", last=True)
        + b"MAIL FROM:<c@one.example>\r\nRCPT TO:<d@two.example>\r\n"
        + _bdat(b"Subject: headers only\r\nMessage-ID: <2@one.example>\r\n")
        + b"BDAT 0 LAST\r\n"
    )
    replies = (
        b"250 sender ok\r\n250 rcpt ok\r\n250 chunk 1\r\n250 chunk 2\r\n250 first queued\r\n"
        b"250 sender ok\r\n250 rcpt ok\r\n250 chunk 1\r\n250 second queued\r\n"
    )
    pcap = write_pcap(tmp_path / "p.pcap", _chunked_session(client, replies, segment=7))
    items = read_all(pcap)
    assert not warnings(items)
    first, second = sorted(smtp(items), key=lambda t: t.trans_depth)
    assert (first.trans_depth, second.trans_depth) == (1, 2)
    assert first.mail_from == "a@one.example"
    assert first.subject == "split across chunks"
    assert first.from_ == "A <a@one.example>"
    assert first.to == ("b@two.example",)
    assert first.user_agent == "Chunky 2"
    assert first.last_reply == "250 first queued"
    assert (second.mail_from, second.rcpt_to) == ("c@one.example", ("d@two.example",))
    assert (second.subject, second.msg_id) == ("headers only", "<2@one.example>")
    assert second.last_reply == "250 second queued"


def test_binary_chunk_is_counted_not_read_as_commands(tmp_path: Path) -> None:
    """Chunk bytes that look like commands, end markers, NULs or bare LFs are only counted."""
    binary = (
        b"Subject: binary\r\n\r\n\x00\xff\n.\r\nMAIL FROM:<forged@evil.example>\r\n"
        b"RCPT TO:<x@evil.example>\r\nDATA\r\n" + bytes(range(256)) * 40 + b"no newline at end"
    )
    client = (
        b"MAIL FROM:<a@one.example> BODY=BINARYMIME\r\nRCPT TO:<b@two.example>\r\n"
        + _bdat(binary, last=True)
        + b"MAIL FROM:<next@one.example>\r\nRCPT TO:<c@two.example>\r\n"
        + _bdat(b"Subject: after\r\n\r\n", last=True)
    )
    replies = b"250 ok\r\n250 ok\r\n250 binary queued\r\n250 ok\r\n250 ok\r\n250 after queued\r\n"
    items = read_all(write_pcap(tmp_path / "b.pcap", _chunked_session(client, replies)))
    assert not warnings(items)
    got = [(t.mail_from, t.subject, t.last_reply) for t in smtp(items)]
    assert got == [
        ("a@one.example", "binary", "250 binary queued"),
        ("next@one.example", "after", "250 after queued"),
    ]


def test_bdat_0_last_alone_ends_the_transaction(tmp_path: Path) -> None:
    """BDAT 0 LAST (an empty message) is logged at its reply, as Zeek does."""
    client = b"MAIL FROM:<a@one.example>\r\nRCPT TO:<b@two.example>\r\nBDAT 0 LAST\r\n"
    replies = b"250 ok\r\n250 ok\r\n250 2.0.0 Ok: 0 bytes queued\r\n"
    items = read_all(write_pcap(tmp_path / "z.pcap", _chunked_session(client, replies)))
    (t,) = smtp(items)
    assert (t.mail_from, t.rcpt_to, t.subject) == ("a@one.example", ("b@two.example",), "")
    assert t.last_reply == "250 2.0.0 Ok: 0 bytes queued"
    assert not warnings(items)


# Hostile chunks: one warning, bounded memory, nothing lost.


def _endless(tmp_path: Path, size: int, body: int) -> Path:
    """A capture whose last chunk announces ``size`` bytes but only ``body`` follow."""
    fake = b"MAIL FROM:<inside@chunk.example>\r\nRCPT TO:<x@y.example>\r\nBDAT 5 LAST\r\n"
    filler = (b"Subject: fake\r\n\r\n" + fake) * (body // (len(fake) + 17) + 1)
    client = (
        b"MAIL FROM:<real@one.example>\r\nRCPT TO:<b@two.example>\r\n"
        + b"BDAT %d LAST\r\nSubject: endless\r\nFrom: e@one.example\r\n\r\n" % size
        + filler[:body]
    )
    turns = smtp_turns(("EHLO c.example\n", "250 CHUNKING\n"))
    turns += [(True, client), (False, b"250 ok\r\n250 ok\r\n")]
    return write_pcap(tmp_path / "e.pcap", session(turns).packets)


@pytest.mark.parametrize("size", [HUGE, 100_000, 10**40])
def test_a_chunk_that_never_ends_is_one_warning_and_the_mail_is_kept(
    tmp_path: Path, size: int
) -> None:
    """BDAT 2^63 (or a chunk the stream stops inside): the rest is chunk, one warning."""
    pcap = _endless(tmp_path, size, 20_000)
    items = read_all(pcap)
    (t,) = smtp(items)  # the fake commands inside the chunk are not transactions
    assert (t.mail_from, t.subject, t.from_) == ("real@one.example", "endless", "e@one.example")
    (warning,) = warnings(items)
    assert warning.traffic
    assert warning.where == f"{pcap}:10.0.0.5:40000->10.0.0.25:25"
    assert f"a BDAT chunk announced as {str(size)[:30]}" in warning.message
    assert "bytes short when the stream ended" in warning.message


def test_a_huge_chunk_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Megabytes of a BDAT 2^63 chunk are counted, never held."""
    pcap = _endless(tmp_path, HUGE, 6_000_000)
    tracemalloc.start()
    try:
        items = read_all(pcap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000
    assert len(smtp(items)) == 1
    assert len(warnings(items)) == 1


def test_cli_stores_the_mail_of_an_endless_chunk_and_exits_0(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    """`ingest pcap`: the warning names the file and stream, the mail is stored, exit 0."""
    pcap = _endless(tmp_path, HUGE, 5000)
    result = run_cli(capsys, "--db", str(db_path), "ingest", "pcap", str(pcap))
    assert result.code == 0, result.err
    assert f"warning: {pcap}:10.0.0.5:40000->10.0.0.25:25: a BDAT chunk announced as" in result.err
    assert "Traceback" not in result.err
    rows = json.loads(
        run_cli(capsys, "--db", str(db_path), "export", "smtp", "--format", "json").out
    )
    assert [(row["mail_from"], row["subject"]) for row in rows] == [("real@one.example", "endless")]
