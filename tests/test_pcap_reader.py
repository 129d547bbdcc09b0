"""Capture formats, link layers and damaged files."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from rolecall.probes.errors import InputError
from rolecall.probes.passive.pcap.capture_file import CHUNK, PacketSource
from rolecall.probes.records import Flow
from tests.pcap_helpers import (
    link_frame,
    of_type,
    read_all,
    session,
    smtp,
    smtp_turns,
    warnings,
    write_pcap,
    write_pcapng,
)

TURNS = smtp_turns(
    ("EHLO c\n", "250 ok\n"),
    ("MAIL FROM:<a@b.example>\n", "250 ok\n"),
    ("RCPT TO:<c@d.example>\n", "250 ok\n"),
    ("DATA\n", "354 go\n"),
    ("Subject: formats\n\nx\n.\n", "250 queued\n"),
)


@pytest.mark.parametrize("link", ["eth", "vlan", "sll", "sll2", "raw"])
@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("container", ["pcap", "pcap-ns", "pcapng", "pcap.gz"])
def test_formats_and_link_layers(tmp_path: Path, link: str, family: str, container: str) -> None:
    """The same session reads the same in every container, link layer and IP version."""
    client, server = ("10.0.0.5", "10.0.0.25") if family == "v4" else ("fd00::5", "fd00::25")
    packets = session(TURNS, client=client, server=server).packets
    path = tmp_path / f"c.{container}"
    if container == "pcapng":
        write_pcapng(path, packets, link)
    else:
        write_pcap(path, packets, link, gz=container.endswith(".gz"), nano=container == "pcap-ns")
    items = read_all(path)
    (t,) = smtp(items)
    assert (t.client, t.server, t.subject, t.last_reply) == (
        client,
        server,
        "formats",
        "250 queued",
    )
    assert t.ts.timestamp() == pytest.approx(packets[6][0], abs=1e-5)  # the MAIL command
    (flow,) = of_type(items, Flow)
    assert (flow.client, flow.server, flow.server_port, flow.transport) == (
        client,
        server,
        25,
        "tcp",
    )
    assert flow.packets == len(packets)
    assert flow.connections == 1
    assert warnings(items) == []


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is not a capture."""
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pcap.*byte offset 0"):
        read_all(path)


def test_wrong_magic(tmp_path: Path) -> None:
    """A text file is refused in one sentence naming it and the offset."""
    path = tmp_path / "notes.pcap"
    path.write_text("hello, this is not a capture\n")
    with pytest.raises(InputError, match=r"notes\.pcap is not a pcap or pcapng capture .*offset 0"):
        read_all(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A path that cannot be opened is an InputError, not a traceback."""
    with pytest.raises(InputError, match="cannot open"):
        read_all(tmp_path / "absent.pcap")
    with pytest.raises(InputError, match="cannot open"):
        read_all(tmp_path)


def test_truncated_header(tmp_path: Path) -> None:
    """A file that ends inside the global header is unreadable."""
    full = write_pcap(tmp_path / "ok.pcap", session(TURNS).packets).read_bytes()
    path = tmp_path / "short.pcap"
    path.write_bytes(full[:10])
    with pytest.raises(InputError, match=r"short\.pcap ends inside the pcap file header"):
        read_all(path)


def test_truncated_inside_packet(tmp_path: Path) -> None:
    """A file cut inside a packet keeps what came before and warns with the offset."""
    full = write_pcap(tmp_path / "ok.pcap", session(TURNS).packets).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:-30])
    items = read_all(path)
    (warning,) = [w for w in warnings(items) if "ends inside" in w.message]
    assert warning.where.startswith(f"{path}@")
    assert int(warning.where.rsplit("@", 1)[1]) < len(full)
    assert of_type(items, Flow)[0].packets == len(session(TURNS).packets) - 1


def test_huge_claimed_length(tmp_path: Path) -> None:
    """A record claiming 3 GB stops the reading with a warning, not a 3 GB allocation."""
    full = bytearray(write_pcap(tmp_path / "ok.pcap", session(TURNS).packets).read_bytes())
    struct.pack_into("<I", full, 24 + 8, 3_000_000_000)  # first record's captured length
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(full))
    items = read_all(path)
    (warning,) = warnings(items)
    assert warning.where == f"{path}@24"
    assert "claims 3000000000 bytes" in warning.message


def test_snaplen_zero_header(tmp_path: Path) -> None:
    """A global header with snap length 0 (some writers) is read as 'no limit'."""
    full = bytearray(write_pcap(tmp_path / "ok.pcap", session(TURNS).packets).read_bytes())
    struct.pack_into("<I", full, 16, 0)
    path = tmp_path / "snap0.pcap"
    path.write_bytes(bytes(full))
    assert len(smtp(read_all(path))) == 1


def test_packets_cut_by_snaplen_are_gaps(tmp_path: Path) -> None:
    """Payload cut by a small snap length is reported missing, not invented."""
    path = tmp_path / "snap.pcap"
    packets = session(TURNS).packets
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 70, 1))
        for ts, pkt in packets:
            frame = b"\0" * 12 + b"\x08\x00" + pkt
            sec, usec = int(ts), round((ts - int(ts)) * 1e6)
            fh.write(struct.pack("<IIII", sec, usec, min(70, len(frame)), len(frame)) + frame[:70])
    items = read_all(path)
    assert any("were not captured" in w.message for w in warnings(items))
    (flow,) = of_type(items, Flow)
    assert flow.packets == len(packets)


def test_damaged_packets_inside_good_file(tmp_path: Path) -> None:
    """Frames too short for their headers are skipped and counted in one warning."""
    packets = session(TURNS).packets
    packets[5] = (packets[5][0], packets[5][1][:22])  # IPv4 header cut short
    packets[6] = (packets[6][0], b"\x45" + b"\x00" * 8)
    items = read_all(write_pcap(tmp_path / "d.pcap", packets))
    (warning,) = [w for w in warnings(items) if "too damaged" in w.message]
    assert warning.message.startswith("2 packet(s)")


def test_bad_gzip(tmp_path: Path) -> None:
    """A gzip file whose content is corrupt is refused (offset 0) or cut short (later)."""
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 64)
    with pytest.raises(InputError, match=r"bad\.pcap\.gz"):
        read_all(path)
    good = gzip.compress(write_pcap(tmp_path / "ok.pcap", session(TURNS).packets).read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(good[: len(good) // 2])
    items = read_all(cut)
    assert warnings(items)


def test_pcapng_bad_block_length(tmp_path: Path) -> None:
    """A pcapng block with an impossible length ends reading with a warning."""
    full = bytearray(write_pcapng(tmp_path / "ok.pcapng", session(TURNS).packets).read_bytes())
    shb_len = struct.unpack_from("<I", full, 4)[0]
    idb_len = struct.unpack_from("<I", full, shb_len + 4)[0]
    struct.pack_into("<I", full, shb_len + idb_len + 4, 7)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(full))
    items = read_all(path)
    (warning,) = warnings(items)
    assert warning.where == f"{path}@{shb_len + idb_len}"


def pcapng_block(btype: int, body: bytes) -> bytes:
    """One little-endian pcapng block, padded to 32 bits."""
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def test_pcapng_two_interfaces_and_nanosecond_resolution(tmp_path: Path) -> None:
    """Packets on an Ethernet and a Linux-cooked interface, one with if_tsresol=9, both read."""
    packets = session(TURNS).packets
    shb = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb_eth = pcapng_block(1, struct.pack("<HHI", 1, 0, 65535) + tsresol)
    idb_sll = pcapng_block(1, struct.pack("<HHI", 113, 0, 65535))
    blocks = [shb, idb_eth, idb_sll]
    for n, (ts, pkt) in enumerate(packets):
        iface, link = (0, "eth") if n % 2 else (1, "sll")
        units = round(ts * 1e9) if iface == 0 else round(ts * 1e6)
        frame = link_frame(pkt, link)
        epb = struct.pack("<IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
        blocks.append(pcapng_block(6, epb + frame))
    path = tmp_path / "two.pcapng"
    path.write_bytes(b"".join(blocks))
    items = read_all(path)
    (t,) = smtp(items)
    assert t.subject == "formats"
    (flow,) = of_type(items, Flow)
    assert flow.packets == len(packets)
    assert flow.first_seen.timestamp() == pytest.approx(packets[0][0], abs=1e-6)
    assert flow.last_seen.timestamp() == pytest.approx(packets[-1][0], abs=1e-6)


def _straddling_capture(path: Path, cut: int, gz: bool = False) -> list[tuple[float, bytes]]:
    """Write frames so that the record at index ``EDGE`` spans the reader's first buffer end,
    ``cut`` bytes of it inside that buffer (under 16: the record header itself is cut)."""
    frames = [(1000.0 + n / 8, bytes([n % 251]) * 1000) for n in range(EDGE - 1)]
    filler = CHUNK - (EDGE - 1) * 1016 - 16 - cut  # ends ``cut`` bytes before the edge
    frames.append((1100.0, b"\x01" * filler))
    frames.append((1101.0, b"\x02" * 2000))  # the record across the edge
    frames.extend((1102.0 + i, bytes([i]) * (40 + 97 * i)) for i in range(40))
    frames.extend((2000.0 + i, b"\x03" * 1500) for i in range(800))  # past a second edge
    with (gzip.open if gz else open)(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=1, snaplen=65535)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return frames


EDGE = CHUNK // 1016 - 2


@pytest.mark.parametrize("cut", [0, 1, 8, 15, 16, 17, 900])
@pytest.mark.parametrize("gz", [False, True])
def test_records_across_read_buffers(tmp_path: Path, cut: int, gz: bool) -> None:
    """Records cut by the read buffer's end, in the header or the body, read whole."""
    path = tmp_path / "edge.pcap"
    frames = _straddling_capture(path, cut, gz)
    source = PacketSource(path)
    got = [(round(ts, 6), frame) for batch in source.batches() for ts, _, frame, _ in batch]
    assert got == [(round(ts, 6), frame) for ts, frame in frames]
    assert source.warnings == []


@pytest.mark.parametrize("cut", [1, 8, 17, 900])
@pytest.mark.parametrize("missing", [1, 10, 500])
def test_file_ending_in_a_record_across_read_buffers(
    tmp_path: Path, cut: int, missing: int
) -> None:
    """A file that ends inside the record spanning the buffer's end warns at that record."""
    path = tmp_path / "edge.pcap"
    frames = _straddling_capture(path, cut)
    edge_record = 24 + CHUNK - cut
    path.write_bytes(path.read_bytes()[: edge_record + cut + missing])
    source = PacketSource(path)
    got = [frame for batch in source.batches() for _, _, frame, _ in batch]
    assert got == [frame for _, frame in frames[:EDGE]]
    (warning,) = source.warnings
    assert warning.where == f"{path}@{edge_record}"
    inside = "packet record header" if cut + missing < 16 else "packet of 2000 bytes"
    assert inside in warning.message


def test_a_huge_claimed_length_across_the_buffer_end_reads_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A snap length of 4 GiB does not make a record claiming almost that much readable."""
    path = tmp_path / "claims.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFFF, 1)
    first = struct.pack("<IIII", 1, 0, 10, 10) + b"\x00" * 10
    path.write_bytes(header + first + struct.pack("<IIII", 2, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x")
    check = (
        "import resource, sys; from pathlib import Path;"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
        "from rolecall.probes.passive.pcap.capture_file import PacketSource;"
        "s = PacketSource(Path(sys.argv[1]));"
        "print(sum(len(b) for b in s.batches()), s.warnings[0].message)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 packet claims 4294967280 bytes"), done.stdout
