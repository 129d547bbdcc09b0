"""Benchmark: rolecall's pcap ingest against tshark, on three kinds of capture.

Workloads (``--workload``), each recorded from real traffic on loopback (see
``bench.pcap_workloads``) and then built into a capture of at least ``--packets``
packets by repeating that recording with every copy's addresses rewritten into its
own 10.x.y.0/24 (many distinct hosts) and its timestamps shifted:

- ``mail-heavy``: large messages (4-150 kB), a quarter of the sessions via SOCKS5;
- ``mail-gateway``: short sessions of 1-4 kB messages, a fifth via SOCKS5, a tenth chunked
  (BDAT to Exim), records dense;
- ``mixed``: mostly HTTPS, DNS and HTTP, about 1% of the packets SMTP.

Everything is generated in a temporary directory, never in the repository (the small
recordings are cached under /tmp). Each tool then runs as a fresh process
(``bench.process_tree``): its wall-clock and CPU time, and its peak RSS summed over all
its processes (a large capture is read in a second process), are printed with the
ratios and whether they meet the workload's targets; CPU time is the steadier figure
on a shared machine, and wall time is the one the targets are about.

``INGEST_COMMAND`` is what is timed for rolecall: the real ``rolecall --db {db}
ingest pcap {pcap}`` into a fresh SQLite inventory, roles derived included; tshark
extracts the same fields (``TSHARK_FIELDS`` and, for mixed traffic, ``SITE_FIELDS``).
``--reader-only`` times the reader alone, in one process (records counted, nothing
stored). Needs tshark (``apt-get install tshark``).

    python -m bench.pcap_vs_tshark [--workload mail-heavy|mail-gateway|mixed|all]
                                   [--packets N] [--reader-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.pcap_workloads import recording, replicate
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
SITE_FIELDS = [
    "udp.srcport",
    "udp.dstport",
    "dns.qry.name",
    "dns.qry.type",
    "dns.a",
    "dns.aaaa",
    "tls.handshake.extensions_server_name",
    "http.host",
    "http.user_agent",
    "http.request.method",
]


def tshark_command(fields: list[str]) -> list[str]:
    """tshark printing ``fields`` of every packet of ``{pcap}``."""
    return ["tshark", "-n", "-r", "{pcap}", "-T", "fields"] + [
        arg for f in fields for arg in ("-e", f)
    ]


@dataclass(frozen=True)
class Workload:
    """A kind of capture, its default size, what tshark extracts and the targets."""

    packets: int
    fields: list[str]
    wall: float | None  # rolecall at least this many times tshark's speed (None: no target)
    cpu: float | None
    rss: float | None = 0.25  # rolecall's peak memory at most this share of tshark's


WORKLOADS = {
    "mail-heavy": Workload(1_000_000, TSHARK_FIELDS, None, None),
    "mail-gateway": Workload(230_000, TSHARK_FIELDS, 5.0, 4.0),
    "mixed": Workload(1_000_000, TSHARK_FIELDS + SITE_FIELDS, 10.0, None),
}


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


def verdict(value: float, target: float | None, at_least: bool) -> str:
    """PASS or FAIL against a target (nothing without one)."""
    if target is None:
        return ""
    ok = value >= target if at_least else value <= target
    return f" {'PASS' if ok else 'FAIL'} (target {'>=' if at_least else '<='} {target:g})"


def compare(name: str, workload: Workload, packets: int | None, reader_only: bool) -> bool:
    """Build one workload's capture, time both tools on it, print the comparison."""
    command = READER_COMMAND if reader_only else INGEST_COMMAND
    recorded = recording(name)
    with tempfile.TemporaryDirectory(prefix="rolecall-bench-") as tmp:
        tmpdir = Path(tmp)
        big = tmpdir / "big.pcap"
        started = time.perf_counter()
        count, smtp = replicate(recorded, big, packets or workload.packets)
        print(
            f"== {name}: {count} packets, {big.stat().st_size / 1e6:.0f} MB, "
            f"{smtp:.1%} of packets SMTP "
            f"(built in {time.perf_counter() - started:.0f} s)"
        )
        warm(big)
        fill = {"{pcap}": str(big), "{db}": str(tmpdir / "bench.db")}
        ours = [fill.get(arg, arg) for arg in command]
        theirs = [fill.get(arg, arg) for arg in tshark_command(workload.fields)]
        ours_cost, r_last = measured(ours, tmpdir / "rolecall.out")
        theirs_cost, _ = measured(theirs, tmpdir / "tshark.out")
    for tool, cost in (("rolecall", ours_cost), ("tshark", theirs_cost)):
        print(
            f"{tool:9} {cost.wall:6.1f} s wall {count / cost.wall:10,.0f} packets/s   "
            f"{cost.cpu:6.1f} s CPU {count / cost.cpu:10,.0f} packets/CPU-s   "
            f"peak RSS {cost.tree_rss / 1024:6.1f} MiB "
            f"(largest process {cost.largest_rss / 1024:.1f} MiB)"
        )
    if r_last:
        print(f"rolecall: {r_last}")
    if reader_only:  # the targets are the full ingest's
        workload = Workload(workload.packets, workload.fields, None, None, None)
    wall = theirs_cost.wall / ours_cost.wall
    cpu = theirs_cost.cpu / ours_cost.cpu
    rss = ours_cost.tree_rss / theirs_cost.tree_rss
    lines = [
        f"speed ratio rolecall/tshark: {wall:.2f}x (wall){verdict(wall, workload.wall, True)}",
        f"                             {cpu:.2f}x (CPU){verdict(cpu, workload.cpu, True)}",
        f"peak RSS ratio (all processes): {rss:.3f}{verdict(rss, workload.rss, False)}",
    ]
    print("\n".join(lines))
    return "FAIL" not in "".join(lines)


def main() -> None:
    """Build each workload's capture, time both tools, print the comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="mail-heavy")
    parser.add_argument(
        "--packets", type=int, help="capture size (default: per workload, see WORKLOADS)"
    )
    parser.add_argument(
        "--reader-only", action="store_true", help="time the reader alone, in one process"
    )
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    print(f"machine load (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    passed = [compare(name, WORKLOADS[name], args.packets, args.reader_only) for name in names]
    print(f"machine load (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not all(passed):
        sys.exit(1)


if __name__ == "__main__":
    main()
