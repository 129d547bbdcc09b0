"""Benchmark: rolecall's pcap reader against tshark on a large mail-heavy capture.

Records real mail traffic on loopback (smtplib to aiosmtpd, directly and through
microsocks, Ethernet-sized segments), then builds a capture of at least
``--packets`` packets by repeating that recording with every copy's addresses
rewritten into its own 10.x.y.0/24 (many distinct hosts) and its timestamps
shifted. Everything is generated in a temporary directory, never in the
repository. Each tool then runs as a fresh process (``bench.process_tree``): its
wall-clock and CPU time, and its peak RSS summed over all its processes (a large
capture is read in a second process), are printed; CPU time is the steadier
figure on a shared machine, and wall time is the one the target is about.

``INGEST_COMMAND`` is what is timed for rolecall: the real ``rolecall --db {db}
ingest pcap {pcap}`` into a fresh SQLite inventory, roles derived included.
``--reader-only`` times the reader alone, in one process (records counted, nothing
stored).
Needs tshark (``apt-get install tshark``).

    python -m bench.pcap_vs_tshark [--packets 1000000] [--reader-only]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import dpkt

from bench.process_tree import Measured, run_measured
from bench.rolecall_command import rolecall_command

REPO = Path(__file__).resolve().parent.parent
CONSUME = (
    "import sys; from pathlib import Path; "
    "from rolecall.probes.passive.pcap.read import PcapSettings, read_serially; "
    "n = sum(1 for _ in read_serially(Path(sys.argv[1]), PcapSettings())); print(n)"
)
READER_COMMAND = [sys.executable, "-c", CONSUME, "{pcap}"]
INGEST_COMMAND = [*rolecall_command(), "--db", "{db}", "-q", "ingest", "pcap", "{pcap}"]
TSHARK_FIELDS = [
    "ip.src",
    "tcp.srcport",
    "ip.dst",
    "tcp.dstport",
    "smtp.req.command",
    "smtp.req.parameter",
    "smtp.response.code",
    "imf.subject",
    "imf.from",
    "imf.to",
    "imf.date",
    "imf.message_id",
    "imf.ext.mailer",
    "imf.user_agent",
    "socks.version",
    "socks.username",
    "socks.remote_name",
    "socks.dst",
    "socks.dstport",
    "socks.results",
]
TSHARK_COMMAND = ["tshark", "-n", "-r", "{pcap}", "-T", "fields"] + [
    arg for f in TSHARK_FIELDS for arg in ("-e", f)
]
NET = "127.0.192.0/24"
# A short note, a typical mail, one with an attachment: about 65 kB on average, which is
# what mail measured in the wild averages (most packets are then message data).
MESSAGE_SIZES = (4_000, 40_000, 150_000)


def record(path: Path) -> None:
    """Record mail traffic on loopback: direct sessions and sessions through SOCKS5."""
    from tests.pcap_helpers import (  # noqa: PLC0415 (test helpers only when recording)
        SourcedSMTP,
        aiosmtpd_server,
        loopback_capture,
        message,
        microsocks,
    )

    with (
        aiosmtpd_server("127.0.192.2") as (host, port, _),
        microsocks("127.0.192.3") as proxy,
        loopback_capture(path, NET),
    ):
        for session in range(40):
            via = proxy if session % 4 == 3 else None
            client = SourcedSMTP(f"127.0.192.{10 + session % 20}", via)
            client.connect(host, port)
            client.ehlo("bench.example")
            for n, size in enumerate(MESSAGE_SIZES):
                rcpt = f"user{n}@example.net"
                body = message("a@example.org", rcpt, f"bench {session} {n}", "The Bat! (v9)", size)
                client.sendmail("a@example.org", [rcpt], body)
            client.quit()


def resegment(ts: float, frame: bytes, mss: int = 1448) -> list[tuple[float, bytes]]:
    """Cut a loopback super-packet (GSO) into Ethernet-sized TCP segments, as a wire shows them."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
        return [(ts, frame)]
    tcp = ip.data
    if len(tcp.data) <= mss:
        return [(ts, frame)]
    out = []
    payload = bytes(tcp.data)
    for i in range(0, len(payload), mss):
        seg = dpkt.tcp.TCP(bytes(tcp))
        seg.data = payload[i : i + mss]
        seg.seq = (tcp.seq + i) % (1 << 32)
        seg.sum = 0
        part = dpkt.ip.IP(bytes(ip))
        part.data = seg
        part.len = part.hl * 4 + len(bytes(seg))
        part.sum = 0
        eth_part = dpkt.ethernet.Ethernet(bytes(eth))
        eth_part.data = part
        out.append((ts + i * 1e-7, bytes(eth_part)))
    return out


def replicate(source: Path, target: Path, packets: int) -> int:
    """Write ``packets`` or more packets: copies of ``source`` in distinct 10.x.y.0/24 nets."""
    with source.open("rb") as fh:
        recorded = [seg for ts, frame in dpkt.pcap.Reader(fh) for seg in resegment(ts, frame)]
    first, last = recorded[0][0], recorded[-1][0]
    span = last - first + 1.0
    written = 0
    with target.open("wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=1, snaplen=65535)
        copy = 0
        while written < packets:
            net = struct.pack("!BBB", 10, 1 + copy // 250, copy % 250)
            for ts, frame in recorded:
                moved = frame
                if frame[12:14] == b"\x08\x00":
                    moved = frame[:26] + net + frame[29:30] + net + frame[33:]
                writer.writepkt(moved, ts=ts + copy * span)
                written += 1
            copy += 1
    return written


def measured(command: list[str], out: Path) -> tuple[Measured, str]:
    """Run ``command`` with its output in ``out``: its cost and its last output line."""
    cost = run_measured(command, out, {**os.environ, "PYTHONPATH": str(REPO)}, REPO)
    if cost.status != 0:
        raise SystemExit(f"{command[0]} failed with status {cost.status}")
    lines = out.read_bytes().splitlines()
    return cost, lines[-1].decode(errors="replace") if lines else ""


def warm(path: Path) -> None:
    """Flush the freshly written capture to disk and read it once, so neither tool runs
    while the kernel writes it back and both find it in the page cache."""
    os.sync()
    with path.open("rb", buffering=0) as handle:
        while handle.read(16 << 20):
            pass


def main() -> None:
    """Build the capture, time both tools, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument(
        "--reader-only", action="store_true", help="time the reader alone, in one process"
    )
    args = parser.parse_args()
    command = READER_COMMAND if args.reader_only else INGEST_COMMAND
    with tempfile.TemporaryDirectory(prefix="rolecall-bench-") as tmp:
        tmpdir = Path(tmp)
        recorded = tmpdir / "recorded.pcap"
        record(recorded)
        big = tmpdir / "big.pcap"
        started = time.perf_counter()
        count = replicate(recorded, big, args.packets)
        print(
            f"capture: {count} packets, {big.stat().st_size / 1e6:.0f} MB "
            f"(built in {time.perf_counter() - started:.0f} s)"
        )
        warm(big)
        fill = {"{pcap}": str(big), "{db}": str(tmpdir / "bench.db")}
        ours = [fill.get(arg, arg) for arg in command]
        theirs = [fill.get(arg, arg) for arg in TSHARK_COMMAND]
        ours_cost, r_last = measured(ours, tmpdir / "rolecall.out")
        theirs_cost, _ = measured(theirs, tmpdir / "tshark.out")
        for name, cost in (("rolecall", ours_cost), ("tshark", theirs_cost)):
            print(
                f"{name:9} {cost.wall:6.1f} s wall {count / cost.wall:10,.0f} packets/s   "
                f"{cost.cpu:6.1f} s CPU {count / cost.cpu:10,.0f} packets/CPU-s   "
                f"peak RSS {cost.tree_rss / 1024:6.1f} MiB "
                f"(largest process {cost.largest_rss / 1024:.1f} MiB)"
            )
        print(f"rolecall: {r_last}")
        print(
            f"speed ratio rolecall/tshark: {theirs_cost.wall / ours_cost.wall:.2f}x (wall), "
            f"{theirs_cost.cpu / ours_cost.cpu:.2f}x (CPU); "
            f"peak RSS ratio (all processes): {ours_cost.tree_rss / theirs_cost.tree_rss:.3f}"
        )


if __name__ == "__main__":
    main()
