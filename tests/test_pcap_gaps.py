"""A capture with segments a sensor missed is read with a warning and exit 0; damage stays 2.

The captures are real ones (Zeek's, and the CHUNKING one) with packets taken out by
rewriting them with dpkt, as a sensor that dropped them would have written them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import dpkt

from tests.daemon_helpers import ROLECALL
from tests.data_paths import CHUNKING, CONFORMANCE

SMTP_BASIC = CONFORMANCE / "smtp-basic" / "trace.pcap"
BDAT_PIPELINE = CHUNKING / "smtp-bdat-pipeline" / "trace.pcap"

Stream = tuple[str, int, str, int]


def _rolecall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command line in a subprocess."""
    return subprocess.run(
        [*ROLECALL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _tcp(frame: bytes) -> tuple[Stream, int, bytes] | None:
    """The stream (src, sport, dst, dport), sequence number and payload of a TCP frame."""
    ip = dpkt.ethernet.Ethernet(frame).data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
        return None
    src, dst = ".".join(map(str, ip.src)), ".".join(map(str, ip.dst))
    return (src, ip.data.sport, dst, ip.data.dport), ip.data.seq, bytes(ip.data.data)


def drop_body_segments(source: Path, target: Path, every: int = 2) -> dict[Stream, int]:
    """Copy a capture without some client segments of each message body; bytes lost per stream.

    Only full segments after the blank line ending a message's headers (DATA or BDAT)
    and holding no command are dropped (one in ``every``), so what the records hold
    stays readable. Bytes a kept retransmission carries again are not lost: the count
    is of bytes no kept packet has.
    """
    kept: dict[Stream, set[int]] = defaultdict(set)
    dropped: dict[Stream, set[int]] = defaultdict(set)
    state: dict[Stream, str] = defaultdict(str)  # "", "headers" or "body"
    body: dict[Stream, int] = defaultdict(int)
    with source.open("rb") as src, target.open("wb") as out:
        reader = dpkt.pcap.Reader(src)
        writer = dpkt.pcap.Writer(out, linktype=reader.datalink())
        for ts, frame in reader:
            seen = _tcp(frame)
            if seen is not None and seen[0][3] == 25 and seen[2]:
                stream, seq, payload = seen
                span = set(range(seq, seq + len(payload)))
                commands = (b"DATA\r\n", b"BDAT ", b"\r\n.\r\n", b"MAIL ")
                if any(command in payload for command in commands) or len(payload) < 200:
                    state[stream] = (
                        "headers" if b"DATA\r\n" in payload or b"BDAT " in payload else ""
                    )
                    cut = max(payload.rfind(b"DATA\r\n"), payload.rfind(b"BDAT "))
                    if state[stream] and b"\r\n\r\n" in payload[cut:]:
                        state[stream] = "body"
                elif state[stream] == "headers":
                    state[stream] = "body" if b"\r\n\r\n" in payload else "headers"
                elif state[stream] == "body":
                    body[stream] += 1
                    if body[stream] % every == 0:
                        dropped[stream] |= span
                        continue
                kept[stream] |= span
            writer.writepkt(frame, ts=ts)
    lost = {stream: len(seqs - kept[stream]) for stream, seqs in dropped.items()}
    lost = {stream: count for stream, count in lost.items() if count}
    assert lost, "the capture has no body segment to drop"
    return lost


def _smtp_export(db: Path, cwd: Path) -> list[dict[str, object]]:
    """The stored mail transactions, without the source column."""
    done = _rolecall("--db", str(db), "export", "smtp", "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return sorted(rows, key=lambda row: (str(row["client"]), int(str(row["client_port"]))))


def test_packet_loss_is_a_warning_and_exit_0_with_the_mail_stored(tmp_path: Path) -> None:
    """Body segments missing: one warning per stream naming file, offset and bytes; exit 0."""
    lossy = tmp_path / "lossy.pcap"
    dropped = drop_body_segments(SMTP_BASIC, lossy)
    db = tmp_path / "lossy.db"
    done = _rolecall("--db", str(db), "ingest", "pcap", str(lossy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    found = re.findall(
        rf"^warning: {re.escape(str(lossy))}@\d+: TCP stream (\S+):(\d+) -> (\S+):(\d+): "
        r"(\d+) bytes were not captured \(\d+ gap\(s\), the first after this offset\)",
        done.stderr,
        re.MULTILINE,
    )
    assert {(c, int(cp), s, int(sp)): int(n) for c, cp, s, sp, n in found} == dropped
    assert f"{len(dropped)} warning(s) about the captured traffic" in done.stdout
    assert "damaged" not in done.stdout + done.stderr

    # The same mail as from the whole capture: the headers were before the loss.
    whole = tmp_path / "whole.db"
    assert (
        _rolecall("--db", str(whole), "ingest", "pcap", str(SMTP_BASIC), cwd=tmp_path).returncode
        == 0
    )
    assert _smtp_export(db, tmp_path) == _smtp_export(whole, tmp_path)
    assert all(row["subject"] for row in _smtp_export(db, tmp_path))

    runs = _rolecall("--db", str(db), "runs", "--format", "json", cwd=tmp_path)
    (run,) = json.loads(runs.stdout)
    assert run["status"] == "ok"


def test_lost_chunk_segments_keep_the_bdat_mail(tmp_path: Path) -> None:
    """Segments lost inside a BDAT chunk: the chunk is still counted out, both mails stored."""
    lossy = tmp_path / "lossy-bdat.pcap"
    dropped = drop_body_segments(BDAT_PIPELINE, lossy, every=1)
    done = _rolecall("--db", str(tmp_path / "b.db"), "ingest", "pcap", str(lossy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{sum(dropped.values())} bytes were not captured" in done.stderr
    rows = _smtp_export(tmp_path / "b.db", tmp_path)
    assert [(row["trans_depth"], row["last_reply"]) for row in rows] == [
        (1, "250 OK id=1lHkUh-008hPw-NY"),
        (2, "250 OK id=1lHkUi-008hPw-0x"),
    ]
    assert all(row["subject"] and row["from"] for row in rows)
    assert "BDAT chunk" not in done.stderr  # the gap was counted out of the chunk


def test_a_lossy_capture_cut_short_is_still_damage(tmp_path: Path) -> None:
    """Loss does not hide damage: the same capture cut mid-record exits 2, mail kept."""
    lossy = tmp_path / "lossy.pcap"
    drop_body_segments(SMTP_BASIC, lossy)
    data = lossy.read_bytes()
    lossy.write_bytes(data[: len(data) - 7])
    db = tmp_path / "cut.db"
    done = _rolecall("--db", str(db), "ingest", "pcap", str(lossy), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"warning: {lossy}@" in done.stderr
    assert "bytes were not captured" in done.stderr
    assert _smtp_export(db, tmp_path)
    runs = _rolecall("--db", str(db), "runs", "--format", "json", cwd=tmp_path)
    assert [run["status"] for run in json.loads(runs.stdout)] == ["partial"]
