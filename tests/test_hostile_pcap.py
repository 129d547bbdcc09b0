"""Hostile captures: lengths bounded before allocation, cuts keep what came before, links named.

Captures are built in the test (dpkt, see ``tests.pcap_helpers``) as many SMTP sessions one
after the other, so where a cut falls says exactly which sessions were whole before it.
The command line runs in a subprocess: exit status, the one warning, no traceback, and
what was stored before still there.
"""

from __future__ import annotations

import gzip
import sqlite3
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from rolecall.probes.passive.pcap.capture_file import PacketSource
from tests.daemon_helpers import ROLECALL
from tests.data_paths import CONFORMANCE
from tests.pcap_helpers import (
    LINKTYPES,
    Frame,
    link_frame,
    read_all,
    session,
    smtp,
    smtp_turns,
    warnings,
)

SESSIONS = 22
MAX_PACKET = 262_144


@dataclass
class Capture:
    """A classic pcap's bytes and, per session, the offset where its last record ends."""

    data: bytes
    session_ends: list[int]
    record_offsets: list[int]

    def whole_before(self, offset: int) -> int:
        """How many sessions lie wholly before ``offset``."""
        return sum(end <= offset for end in self.session_ends)


def _sessions(count: int = SESSIONS) -> list[list[Frame]]:
    """``count`` SMTP sessions of a few dozen packets each, one after the other in time."""
    out = []
    for n in range(count):
        turns = smtp_turns(
            (f"EHLO client{n}\n", "250 ok\n"),
            ("MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\nDATA\n", "250 ok\n250 ok\n354 go\n"),
            (f"Subject: mail {n}\n\n" + "a line of the body\n" * 1500 + ".\n", "250 queued\n"),
        )
        out.append(session(turns, cport=40000 + n, start=1_700_000_000.0 + 60 * n).packets)
    return out


def _classic(sessions: list[list[Frame]], snaplen: int = 65535, linktype: int = 1) -> Capture:
    """A little-endian classic pcap of the sessions over Ethernet."""
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    offset, ends, offsets = 24, [], []
    for packets in sessions:
        for ts, pkt in packets:
            frame = link_frame(pkt, "eth")
            sec = int(ts)
            parts.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)))
            parts.append(frame)
            offsets.append(offset)
            offset += 16 + len(frame)
        ends.append(offset)
    return Capture(b"".join(parts), ends, offsets)


def _decompressed_length(gz: bytes) -> int:
    """How many bytes a (possibly cut) gzip stream decompresses to."""
    return len(zlib.decompressobj(wbits=31).decompress(gz))


def _rolecall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command line in a subprocess."""
    return subprocess.run(
        [*ROLECALL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _smtp_rows(db: Path) -> set[tuple[str, int]]:
    """(client, client port) of every stored mail transaction."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT client, client_port FROM smtp").fetchall()
    return {(str(client), int(port)) for client, port in rows}


def _one_warning(err: str, file: Path) -> str:
    """Assert stderr holds exactly one warning, naming the file, and no traceback."""
    assert "Traceback" not in err
    assert "internal error" not in err
    found = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(found) == 1, err
    assert found[0].startswith(f"warning: {file}@"), found[0]
    return found[0]


@pytest.fixture(scope="module")
def capture() -> Capture:
    """The 22 sessions as a classic pcap."""
    return _classic(_sessions())


@pytest.fixture
def stocked(tmp_path: Path) -> tuple[Path, set[tuple[str, int]]]:
    """An inventory holding one good capture's mail, and that mail."""
    db = tmp_path / "inventory.db"
    good = CONFORMANCE / "smtp-basic" / "trace.pcap"
    done = _rolecall("--db", str(db), "ingest", "pcap", str(good), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    before = _smtp_rows(db)
    assert before
    return db, before


# Reader: a cut anywhere keeps every session whole before it, with one warning.


@pytest.mark.parametrize("fraction", [0.1, 0.37, 0.5, 0.73, 0.95])
def test_a_cut_gzip_capture_keeps_what_was_before_the_cut(
    tmp_path: Path, capture: Capture, fraction: float
) -> None:
    packed = gzip.compress(capture.data)
    cut = packed[: int(len(packed) * fraction)]
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(cut)
    whole = capture.whole_before(_decompressed_length(cut))
    items = read_all(path)
    assert len(smtp(items)) >= whole
    (warning,) = warnings(items)
    assert f"truncated at compressed byte {len(cut)}" in warning.message
    assert "what came before it is kept" in warning.message


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_a_plain_capture_cut_mid_record_keeps_what_was_before(
    tmp_path: Path, capture: Capture, fraction: float
) -> None:
    size = int(len(capture.data) * fraction)
    record = max(o for o in capture.record_offsets if o < size - 20)
    size = record + 20  # inside the record's data
    path = tmp_path / "cut.pcap"
    path.write_bytes(capture.data[:size])
    items = read_all(path)
    assert len(smtp(items)) >= capture.whole_before(size)
    (warning,) = warnings(items)
    assert warning.where == f"{path}@{record}"
    assert f"(truncated at byte {size})" in warning.message


def test_a_gzip_stream_damaged_midway_keeps_what_was_before(
    tmp_path: Path, capture: Capture
) -> None:
    packed = bytearray(gzip.compress(capture.data))
    middle = len(packed) // 2
    packed[middle : middle + 64] = b"\xff" * 64
    path = tmp_path / "damaged.pcap.gz"
    path.write_bytes(bytes(packed))
    items = read_all(path)
    assert len(smtp(items)) >= capture.whole_before(_decompressed_length(bytes(packed[:middle])))
    assert len(smtp(items)) >= 5
    # Deflate may turn the damage into a few bytes of garbage before it is found: then
    # a second warning says where those bytes stopped making sense.
    found = warnings(items)
    assert any("what came before it is kept" in w.message for w in found), found
    assert len(found) <= 2


# Reader: every length is checked before anything is allocated for it.


def test_a_long_packet_is_skipped_and_reading_goes_on(tmp_path: Path, capture: Capture) -> None:
    """A 300 KiB record (beyond the 256 KiB limit) is skipped; the sessions after it are read."""
    head, rest = capture.data[: capture.session_ends[9]], capture.data[capture.session_ends[9] :]
    long_record = struct.pack("<IIII", 1_700_000_600, 0, 300 << 10, 300 << 10) + bytes(300 << 10)
    path = tmp_path / "long.pcap"
    path.write_bytes(head + long_record + rest)
    items = read_all(path)
    assert len(smtp(items)) == SESSIONS
    (warning,) = warnings(items)
    assert warning.where == f"{path}@{capture.session_ends[9]}"
    assert warning.message == f"packet claims {300 << 10} bytes (limit {MAX_PACKET}); skipped"


@pytest.mark.parametrize("snaplen", [65535, 0xFFFFFFFF])
def test_an_impossible_length_stops_reading_and_keeps_what_came_before(
    tmp_path: Path, capture: Capture, snaplen: int
) -> None:
    """A record claiming 2 GiB is not read, whatever snap length the header states."""
    data = bytearray(capture.data)
    struct.pack_into("<I", data, 16, snaplen)
    record = capture.session_ends[9]
    struct.pack_into("<I", data, record + 8, 2 << 30)
    path = tmp_path / "claims.pcap"
    path.write_bytes(bytes(data))
    items = read_all(path)
    assert len(smtp(items)) == 10
    (warning,) = warnings(items)
    assert warning.where == f"{path}@{record}"
    assert warning.message.startswith(f"packet claims {2 << 30} bytes")
    assert "reading stopped" in warning.message


def _pcapng_block(btype: int, body: bytes) -> bytes:
    """One little-endian pcapng block, padded to 32 bits."""
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _pcapng(
    packets: list[tuple[int, Frame]], linktypes: list[int], caplens: dict[int, int]
) -> bytes:
    """A pcapng file: one interface per link type, each packet an EPB on its interface.

    ``caplens`` overrides the captured length a packet's block states (by packet index).
    """
    blocks = [_pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    blocks += [_pcapng_block(1, struct.pack("<HHI", link, 0, 65535)) for link in linktypes]
    for n, (iface, (ts, pkt)) in enumerate(packets):
        frame = link_frame(pkt, "eth")
        micros = round(ts * 1e6)
        caplen = caplens.get(n, len(frame))
        epb = struct.pack("<IIIII", iface, micros >> 32, micros & 0xFFFFFFFF, caplen, len(frame))
        blocks.append(_pcapng_block(6, epb + frame))
    return b"".join(blocks)


def test_pcapng_packet_claiming_too_much_is_skipped(tmp_path: Path) -> None:
    """An EPB whose captured length is beyond the limit is skipped; its block still frames it."""
    sessions = _sessions(3)
    packets = [(0, frame) for packets in sessions for frame in packets]
    bad = len(sessions[0]) + 2  # the second session's handshake ACK
    path = tmp_path / "claims.pcapng"
    path.write_bytes(_pcapng(packets, [1], {bad: 0xFFFFFFF0}))
    items = read_all(path)
    assert len(smtp(items)) == 3
    (warning,) = warnings(items)
    assert warning.message == f"packet claims {0xFFFFFFF0} bytes (limit {MAX_PACKET}); skipped"


# Reader: a link type that is not read is named, never "0 records" in silence.


def test_an_unknown_link_type_is_named_with_the_packets_skipped(
    tmp_path: Path, capture: Capture
) -> None:
    data = bytearray(capture.data)
    struct.pack_into("<I", data, 20, 147)
    path = tmp_path / "user0.pcap"
    path.write_bytes(bytes(data))
    items = read_all(path)
    (warning,) = warnings(items)
    assert warning.where == f"{path}@20"
    assert warning.message == (
        f"link type 147 (USER0) is not a link layer rolecall reads: "
        f"{len(capture.record_offsets)} packet(s) skipped"
    )


def test_an_unnamed_link_type_is_given_by_number(tmp_path: Path) -> None:
    data = bytearray(_classic(_sessions(1)).data)
    struct.pack_into("<I", data, 20, 65000)
    path = tmp_path / "odd.pcap"
    path.write_bytes(bytes(data))
    (warning,) = warnings(read_all(path))
    assert warning.message.startswith("link type 65000 is not a link layer rolecall reads")


def test_pcapng_reads_known_interfaces_and_names_the_unknown_one(tmp_path: Path) -> None:
    """Packets on an Ethernet interface are read beside those of a Bluetooth one."""
    sessions = _sessions(2)
    packets = [(0, f) for f in sessions[0]] + [(1, f) for f in sessions[1]]
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(_pcapng(packets, [LINKTYPES["eth"], 187], {}))
    items = read_all(path)
    assert len(smtp(items)) == 1
    (warning,) = warnings(items)
    assert warning.message == (
        f"link type 187 (BLUETOOTH_HCI_H4) is not a link layer rolecall reads: "
        f"{len(sessions[1])} packet(s) skipped"
    )


# Command line: exit 2 and one warning; the readable part and what was stored before kept.


def test_cli_keeps_the_sessions_of_a_cut_gzip_capture(
    tmp_path: Path, capture: Capture, stocked: tuple[Path, set[tuple[str, int]]]
) -> None:
    db, before = stocked
    packed = gzip.compress(capture.data)
    cut = packed[: len(packed) * 2 // 3]
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(cut)
    whole = capture.whole_before(_decompressed_length(cut))
    assert whole >= 10
    done = _rolecall("--db", str(db), "ingest", "pcap", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "1 damaged entries skipped" in done.stdout
    assert f"truncated at compressed byte {len(cut)}" in _one_warning(done.stderr, path)
    after = _smtp_rows(db)
    assert before <= after
    assert len(after - before) >= whole


def _peak_rss_kib(proc: subprocess.Popen[str]) -> int:
    """The process's resident-memory high-water mark (VmHWM, KiB), watched until it exits.

    Not wait4's ru_maxrss: that counts the memory of the process it was forked from, and
    the test process is large by the end of the suite.
    """
    status = Path(f"/proc/{proc.pid}/status")
    peak = 0
    while proc.poll() is None:
        try:
            text = status.read_text()
        except OSError:
            break
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
        time.sleep(0.01)
    proc.wait()
    return peak


def test_cli_reads_a_gzip_bomb_claiming_2_gib_in_bounded_memory(
    tmp_path: Path, capture: Capture, stocked: tuple[Path, set[tuple[str, int]]]
) -> None:
    """A 2 GiB record claim (snap length 4 GiB) behind 256 MiB of zeros allocates neither."""
    db, before = stocked
    data = bytearray(capture.data)
    struct.pack_into("<I", data, 16, 0xFFFFFFFF)
    record = capture.session_ends[9]
    struct.pack_into("<I", data, record + 8, 2 << 30)
    path = tmp_path / "bomb.pcap.gz"
    pack = zlib.compressobj(1, wbits=31)
    zeros = bytes(16 << 20)
    with path.open("wb") as out:
        out.write(pack.compress(bytes(data)))
        for _ in range(16):
            out.write(pack.compress(zeros))
        out.write(pack.flush())
    assert path.stat().st_size < 4 << 20
    with (tmp_path / "out").open("w+") as stdout, (tmp_path / "err").open("w+") as stderr:
        proc = subprocess.Popen(
            [*ROLECALL, "--db", str(db), "ingest", "pcap", str(path)],
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        peak = _peak_rss_kib(proc)
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 2, err
    # In KiB: the process (interpreter and all) stays far below the 256 MiB of zeros.
    assert peak < 200 << 10, peak
    warning = _one_warning(err, path)
    assert f"@{record}: packet claims {2 << 30} bytes" in warning
    after = _smtp_rows(db)
    assert before <= after
    assert len(after - before) == 10


def test_cli_names_the_link_type_it_cannot_read(
    tmp_path: Path, capture: Capture, stocked: tuple[Path, set[tuple[str, int]]]
) -> None:
    db, before = stocked
    data = bytearray(capture.data)
    struct.pack_into("<I", data, 20, 147)
    path = tmp_path / "user0.pcap"
    path.write_bytes(bytes(data))
    done = _rolecall("--db", str(db), "ingest", "pcap", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "link type 147 (USER0)" in _one_warning(done.stderr, path)
    assert _smtp_rows(db) == before


def test_packet_source_never_holds_more_than_a_packet_of_an_oversized_claim(
    tmp_path: Path, capture: Capture
) -> None:
    """Skipping a long record reads it a buffer at a time: no batch holds a long packet."""
    head = capture.data[: capture.session_ends[0]]
    long_record = struct.pack("<IIII", 1_700_000_100, 0, 8 << 20, 8 << 20) + bytes(8 << 20)
    path = tmp_path / "long.pcap"
    path.write_bytes(head + long_record + capture.data[capture.session_ends[0] :])
    source = PacketSource(path)
    lengths = [len(frame) for batch in source.batches() for _, _, frame, _ in batch]
    assert len(lengths) == len(capture.record_offsets)
    assert max(lengths) <= MAX_PACKET
    assert len(source.warnings) == 1
