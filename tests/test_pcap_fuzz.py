"""Hypothesis fuzzing of the capture reader, the reassembler and the stream parsers (bounded)."""

from __future__ import annotations

import contextlib
import gzip
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecall.probes.errors import InputError
from rolecall.probes.passive.pcap.app_layer import dns_records, sni
from rolecall.probes.passive.pcap.capture_file import PacketSource
from rolecall.probes.passive.pcap.read import make_parser
from rolecall.probes.passive.pcap.reassembly import Reassembler
from rolecall.probes.passive.pcap.stream import PcapSettings, StreamContext
from rolecall.probes.records import ReadWarning
from tests.pcap_helpers import read_all, session, smtp_turns, write_pcap, write_pcapng

FUZZ = settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TOKENS = st.sampled_from(
    [
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b>\r\n",
        b"RCPT TO:<c@d>\r\n",
        b"DATA\r\n",
        b"BDAT 5 LAST\r\n",
        b"BDAT 3\r\n",
        b"Subject: s\r\n",
        b"\r\n",
        b".\r\n",
        b"STARTTLS\r\n",
        b"220 hi\r\n",
        b"250 ok\r\n",
        b"354 go\r\n",
        b"550 no\r\n",
        b"\x05\x01\x00",
        b"\x05\x01\x02",
        b"\x05\x00",
        b"\x05\x02",
        b"\x01\x01u\x01p",
        b"\x01\x00",
        b"\x05\x01\x00\x03\x03abc\x00\x19",
        b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x19",
        b"\x04\x01\x00\x19\x00\x00\x00\x01u\x00h\x00",
        b"\x00\x5a\x00\x00\x00\x00\x00\x00",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\x16\x03\x01\x00\x30\x01",
    ]
)
CTX = StreamContext("10.0.0.5", 40000, "10.0.0.25", 25, "fuzz")
TURNS = smtp_turns(
    ("EHLO c\n", "250 ok\n"),
    ("MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n", "250 ok\n250 ok\n354 go\n"),
    ("Subject: s\n\nbody\n.\n", "250 queued\n"),
)


def valid_capture(kind: str) -> bytes:
    """Bytes of a small valid capture."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c"
        packets = session(TURNS).packets
        (write_pcapng if kind == "pcapng" else write_pcap)(path, packets)
        return path.read_bytes()


@FUZZ
@given(
    kind=st.sampled_from(["pcap", "pcapng"]),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, 5000),
)
def test_mutated_captures_never_crash(kind: str, flips: list[tuple[int, int]], cut: int) -> None:
    """A damaged capture reads as records and warnings, or as one InputError; nothing else."""
    data = bytearray(valid_capture(kind))
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        path.write_bytes(bytes(data[:cut]))
        try:
            items = read_all(path)
        except InputError as exc:
            message = str(exc)
            items = []
        else:
            message = str(path)
    assert str(path) in message
    for item in items:
        if isinstance(item, ReadWarning):
            assert item.where.startswith(str(path))


def _frames(path: Path) -> tuple[list[bytes], list[ReadWarning]]:
    """The frames a capture file yields, and its warnings."""
    source = PacketSource(path)
    frames = [frame for batch in source.batches() for _, _, frame, _ in batch]
    return frames, source.warnings


@FUZZ
@given(kind=st.sampled_from(["pcap", "pcap.gz", "pcapng"]), cut=st.floats(0.01, 0.99))
def test_a_cut_capture_yields_a_prefix_and_says_so_once(kind: str, cut: float) -> None:
    """Wherever a capture (gzip'd or not) is cut, what it yields is a prefix of the whole."""
    data = valid_capture("pcapng" if kind == "pcapng" else "pcap")
    if kind == "pcap.gz":
        data = gzip.compress(data)
    with tempfile.TemporaryDirectory() as tmp:
        whole, cut_file = Path(tmp) / "whole", Path(tmp) / "cut"
        whole.write_bytes(data)
        cut_file.write_bytes(data[: max(40, int(len(data) * cut))])
        full, _ = _frames(whole)
        try:
            part, found = _frames(cut_file)
        except InputError:
            return  # cut inside the first header: nothing could be read
    assert part == full[: len(part)]
    assert len(found) <= 1


@FUZZ
@given(
    kind=st.sampled_from(["pcap", "pcapng"]),
    record=st.integers(0, 40),
    claim=st.one_of(st.integers(0, 1 << 20), st.integers(0, (1 << 32) - 1)),
    snaplen=st.integers(0, (1 << 32) - 1),
)
def test_no_stated_length_makes_a_packet_beyond_the_limit(
    kind: str, record: int, claim: int, snaplen: int
) -> None:
    """A record's (or EPB's) length and the snap length, any 32-bit value: packets stay bounded.

    Every packet before the altered record is read as it was.
    """
    data = bytearray(valid_capture(kind))
    if kind == "pcap":
        struct.pack_into("<I", data, 16, snaplen)
        length_at = 8
    else:
        length_at = 20  # an EPB's captured length, after its block header
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "whole"
        whole.write_bytes(bytes(data))
        full, _ = _frames(whole)
        offsets = _record_offsets(bytes(data), kind)
        if record >= len(offsets):
            return
        struct.pack_into("<I", data, offsets[record] + length_at, claim)
        altered = Path(tmp) / "altered"
        altered.write_bytes(bytes(data))
        frames, _ = _frames(altered)
    assert all(len(frame) <= 262_144 for frame in frames)
    assert frames[:record] == full[:record]


def _record_offsets(data: bytes, kind: str) -> list[int]:
    """Where each packet record (classic) or enhanced packet block (pcapng) starts."""
    offsets = []
    if kind == "pcap":
        pos = 24
        while pos + 16 <= len(data):
            offsets.append(pos)
            pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        return offsets
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            offsets.append(pos)
        pos += blen
    return offsets


@FUZZ
@given(linktype=st.integers(0, 0xFFFF))
def test_every_link_type_is_read_or_named(linktype: int) -> None:
    """A capture of any link type yields its packets or one warning naming that link type."""
    data = bytearray(valid_capture("pcap"))
    struct.pack_into("<I", data, 20, linktype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l"
        path.write_bytes(bytes(data))
        frames, found = _frames(path)
    if frames:
        assert found == []
    else:
        (warning,) = found
        assert warning.message.startswith(f"link type {linktype} ")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_files(data: bytes) -> None:
    """Arbitrary bytes, behind each magic number, never raise anything but InputError."""
    for magic in (b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r"
            path.write_bytes(magic + data)
            with contextlib.suppress(InputError):
                read_all(path)


@FUZZ
@given(
    kind=st.sampled_from(["smtp", "socks", "http", "tls"]),
    chunks=st.lists(
        st.tuples(st.booleans(), st.one_of(TOKENS, st.binary(max_size=300))), max_size=30
    ),
    gaps=st.lists(st.integers(0, 29), max_size=3),
)
def test_stream_parsers_take_any_bytes(
    kind: str, chunks: list[tuple[bool, bytes]], gaps: list[int]
) -> None:
    """Garbage in any direction, with gaps, only ever yields records."""
    parser = make_parser(kind, CTX, PcapSettings(max_line=64))
    assert parser is not None
    for i, (from_client, data) in enumerate(chunks):
        if i in gaps:
            parser.gap(from_client, 10, 1.0)
        parser.feed(from_client, data, 1.0)
    parser.finish(2.0)


@FUZZ
@given(st.binary(max_size=600))
def test_dns_and_sni_take_any_bytes(data: bytes) -> None:
    """The DNS and ClientHello readers return nothing rather than fail on garbage."""
    dns_records(data, "10.0.0.5", "10.0.0.53", True, 1.0)
    dns_records(data, "10.0.0.5", "10.0.0.53", False, 1.0)
    assert isinstance(sni(data), str)


@FUZZ
@given(
    stream=st.binary(min_size=1, max_size=400),
    cuts=st.lists(st.integers(1, 399), max_size=20),
    order=st.randoms(use_true_random=False),
    drop=st.sets(st.integers(0, 20), max_size=3),
    isn=st.integers(0, (1 << 32) - 1),
)
def test_reassembly_never_invents_bytes(
    stream: bytes, cuts: list[int], order: object, drop: set[int], isn: int
) -> None:
    """Whatever the order and losses, delivered bytes are the stream's, gaps where data was lost."""
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    segments = [(bounds[i], stream[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    kept = [s for i, s in enumerate(segments) if i not in drop]
    order.shuffle(kept)  # type: ignore[attr-defined]
    r = Reassembler(150, next_seq=isn)
    out = []
    for offset, data in kept + kept[:2]:
        out += r.segment((isn + offset) % (1 << 32), data)
    out += r.flush()
    pos = 0
    for chunk in out:
        if isinstance(chunk, int):
            assert chunk > 0
            pos += chunk
        else:
            assert stream[pos : pos + len(chunk)] == chunk
            pos += len(chunk)
    assert pos <= len(stream)
