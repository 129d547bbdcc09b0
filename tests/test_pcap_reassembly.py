"""TCP reassembly: retransmissions, reordering, missing SYN, gaps, one-sided captures."""

from __future__ import annotations

import random
from pathlib import Path

from rolecall.probes.passive.pcap.reassembly import Chunk, Reassembler
from tests.pcap_helpers import read_all, session, smtp, smtp_turns, warnings, write_pcap

TURNS = smtp_turns(
    ("EHLO c\n", "250 ok\n"),
    ("MAIL FROM:<a@b.example>\n", "250 ok\n"),
    ("RCPT TO:<c@d.example>\n", "250 ok\n"),
    ("DATA\n", "354 go\n"),
    ("Subject: reassembled\nX-Mailer: R 1\n\n" + "body line\n" * 200 + ".\n", "250 queued\n"),
    ("QUIT\n", "221 bye\n"),
)


def joined(chunks: list[Chunk]) -> bytes:
    """Data chunks joined, gaps shown as '?' per missing byte."""
    return b"".join(c if isinstance(c, bytes) else b"?" * c for c in chunks)


def test_reassembler_in_order_retransmit_overlap() -> None:
    """Retransmitted and overlapping bytes are delivered once."""
    r = Reassembler(1000, next_seq=100)
    assert joined(r.segment(100, b"hello")) == b"hello"
    assert r.segment(100, b"hello") == []
    assert joined(r.segment(103, b"lo world")) == b" world"


def test_reassembler_out_of_order_and_wraparound() -> None:
    """Segments are held until the hole closes, across the 32-bit sequence wrap."""
    start = (1 << 32) - 3
    r = Reassembler(1000, next_seq=start)
    assert r.segment(0, b"def") == []
    assert joined(r.segment(start, b"abc")) == b"abcdef"
    assert r.next_seq == 3


def test_reassembler_gap_at_flush_and_limit() -> None:
    """A hole that never fills is delivered as a gap; so is one that exceeds the buffer."""
    r = Reassembler(1000, next_seq=0)
    assert r.segment(10, b"later") == []
    assert r.flush() == [10, b"later"]
    assert (r.gaps, r.gap_bytes) == (1, 10)
    small = Reassembler(8, next_seq=0)
    assert small.segment(4, b"12345") == []
    assert small.segment(20, b"abcdefghij") == [4, b"12345", 11, b"abcdefghij"]


def test_shuffled_and_duplicated_segments(tmp_path: Path) -> None:
    """Segments of one sender arriving out of order, some twice, still give the transaction."""
    packets = session(TURNS, segment=7).packets
    rng = random.Random(7)
    reordered: list[tuple[float, bytes]] = []
    run: list[tuple[float, bytes]] = []
    for packet in [*packets, (0.0, b"")]:
        if run and packet[1][12:16] != run[0][1][12:16]:  # the sender changed: end of a run
            rng.shuffle(run)
            reordered += run + rng.sample(run, min(2, len(run)))  # and a few retransmissions
            run = []
        run.append(packet)
    items = read_all(write_pcap(tmp_path / "s.pcap", reordered))
    (t,) = smtp(items)
    assert (t.subject, t.user_agent, t.last_reply) == ("reassembled", "R 1", "250 queued")
    assert warnings(items) == []


def test_missing_syn(tmp_path: Path) -> None:
    """A capture that starts after the handshake is reassembled from the first segment seen."""
    items = read_all(write_pcap(tmp_path / "n.pcap", session(TURNS, handshake=False).packets))
    (t,) = smtp(items)
    assert t.subject == "reassembled"


def test_gap_in_body_is_reported_not_invented(tmp_path: Path) -> None:
    """A lost body segment is a warning; the headers and the end of the message are kept."""
    packets = session(TURNS, segment=200).packets
    body = [i for i, (_, p) in enumerate(packets) if b"body line" in p and b"Subject" not in p]
    del packets[body[2]]
    items = read_all(write_pcap(tmp_path / "g.pcap", packets))
    (t,) = smtp(items)
    assert (t.subject, t.last_reply) == ("reassembled", "250 queued")
    (gap,) = warnings(items)
    assert "200 bytes were not captured" in gap.message


def test_gap_in_headers_drops_what_was_not_seen(tmp_path: Path) -> None:
    """When the segment holding the headers is lost, no subject is made up."""
    packets = session(TURNS, segment=200).packets
    (head,) = [i for i, (_, p) in enumerate(packets) if b"Subject" in p]
    del packets[head]
    items = read_all(write_pcap(tmp_path / "h.pcap", packets))
    (t,) = smtp(items)
    assert (t.subject, t.user_agent, t.mail_from) == ("", "", "a@b.example")
    assert len(warnings(items)) == 1


def test_one_sided_capture(tmp_path: Path) -> None:
    """Only the client's half was captured: the envelope is read, no reply is invented."""
    packets = [p for p in session(TURNS).packets if p[1][12:16] == bytes([10, 0, 0, 5])]
    items = read_all(write_pcap(tmp_path / "o.pcap", packets))
    (t,) = smtp(items)
    assert (t.mail_from, t.rcpt_to, t.subject) == ("a@b.example", ("c@d.example",), "reassembled")
    assert t.last_reply == ""
