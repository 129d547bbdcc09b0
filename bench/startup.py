"""Benchmark: how long rolecall takes to start, beside the tools a user would run instead.

Two figures, each the median of ``--runs`` fresh processes after one warm-up run:

- ``rolecall --help``, target under 150 ms, beside ``tshark -h`` and ``nmap -V``;
- ``rolecall --db NEW ingest pcap ONE.pcap``: a one-packet capture into a new SQLite
  inventory (schema created, revision recorded, roles derived), target under 400 ms,
  beside ``tshark -r ONE.pcap -T fields -e frame.number``.

``rolecall ingest pcap --help``, the bare interpreter and the interpreter importing the
libraries an ingest loads before any of rolecall's own work (typer, pydantic, SQLAlchemy)
are shown too, without a target: how much of the ingest's figure those alone take.
The runs of the tools alternate, so a change in the machine's load falls on all of them
alike; wall time is what the targets are about, CPU time the steadier figure on a shared
machine. Python's byte-code cache is used as an installed rolecall uses it
(PYTHONDONTWRITEBYTECODE is dropped, the warm-up run writes the cache). Everything is
written in a temporary directory. Needs tshark and nmap.

    python -m bench.startup [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.process_tree import Measured, run_measured
from bench.rolecall_command import rolecall_command

REPO = Path(__file__).resolve().parent.parent
HELP_TARGET = 0.150  # seconds, median wall
INGEST_TARGET = 0.400


@dataclass(frozen=True)
class Timed:
    """The medians of one command's runs."""

    wall: float  # seconds
    cpu: float


def one_packet_pcap(path: Path) -> None:
    """Write a pcap holding one Ethernet/IPv4/TCP SYN from 10.0.0.1:40000 to 10.0.0.2:25."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 25, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    source, destination = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    fields = (0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, source, destination)
    header = struct.pack("!BBHHHBBH4s4s", *fields)
    words = sum(struct.unpack("!10H", header))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    header = header[:10] + struct.pack("!H", ~words & 0xFFFF) + header[12:]
    frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + header + tcp
    with path.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        handle.write(struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame)


def timed_runs(
    commands: dict[str, Callable[[int], list[str]]], runs: int, tmp: Path
) -> dict[str, Timed]:
    """Run each command once to warm up, then ``runs`` times in turn; the medians per command."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    costs: dict[str, list[Measured]] = {name: [] for name in commands}
    for run in range(runs + 1):
        for name, command in commands.items():
            with _stderr_to(tmp / "err"):
                cost = run_measured(command(run), tmp / "out", env, tmp)
            if cost.status != 0:
                said = (tmp / "err").read_text(errors="replace")[-500:]
                raise SystemExit(f"{name} failed with status {cost.status}: {said}")
            if run:
                costs[name].append(cost)
    return {
        name: Timed(
            statistics.median(cost.wall for cost in measured),
            statistics.median(cost.cpu for cost in measured),
        )
        for name, measured in costs.items()
    }


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr, and so the timed command's, to a file while it runs.

    tshark warns on every run as root; what a failed run said is shown from the file.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as handle:
        os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def line(name: str, timed: Timed, target: float | None = None) -> str:
    """One command's medians, and PASS or FAIL against its target if it has one."""
    said = f"{name:52} {timed.wall * 1000:7.1f} ms wall {timed.cpu * 1000:7.1f} ms CPU"
    if target is not None:
        said += f"  {'PASS' if timed.wall < target else 'FAIL'} (target < {target * 1000:.0f} ms)"
    return said


def ratio(ours: Timed, theirs: Timed, name: str) -> str:
    """How many times the other tool's time rolecall takes, wall and CPU."""
    return (
        f"  rolecall / {name}: {ours.wall / theirs.wall:.2f}x wall, "
        f"{ours.cpu / theirs.cpu:.2f}x CPU"
    )


HELP = "rolecall --help"
SUB_HELP = "rolecall ingest pcap --help"
INGEST = "rolecall --db NEW ingest pcap ONE.pcap"
TSHARK_HELP = "tshark -h"
NMAP_VERSION = "nmap -V"
TSHARK_READ = "tshark -r ONE.pcap -T fields -e frame.number"
PYTHON = "python -c pass (the interpreter alone)"
LIBRARIES = "python -c 'import typer, pydantic, sqlalchemy'"
"""The libraries an ingest loads (``--help`` loads typer alone)."""


def commands(tmp: Path, pcap: Path) -> dict[str, Callable[[int], list[str]]]:
    """Each timed command by name, as the argv of its run number (each ingest a new inventory)."""
    rolecall = rolecall_command()
    return {
        HELP: lambda _: [*rolecall, "--help"],
        TSHARK_HELP: lambda _: ["tshark", "-h"],
        NMAP_VERSION: lambda _: ["nmap", "-V"],
        SUB_HELP: lambda _: [*rolecall, "ingest", "pcap", "--help"],
        INGEST: lambda run: (
            [*rolecall, "--db", str(tmp / f"new-{run}.db"), "-q", "ingest", "pcap", str(pcap)]
        ),
        TSHARK_READ: lambda _: ["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.number"],
        PYTHON: lambda _: [sys.executable, "-c", "pass"],
        LIBRARIES: lambda _: [sys.executable, "-c", "import typer, pydantic, sqlalchemy"],
    }


def main() -> None:
    """Time rolecall's start-up and the other tools', print the medians, ratios and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (at least 10)")
    args = parser.parse_args()
    runs = max(args.runs, 10)
    for tool in ("tshark", "nmap"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    print(f"machine load (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="rolecall-bench-") as name:
        tmp = Path(name)
        pcap = tmp / "one.pcap"
        one_packet_pcap(pcap)
        timed = timed_runs(commands(tmp, pcap), runs, tmp)
    report = [
        f"medians of {runs} fresh processes each, after one warm-up run:",
        line(HELP, timed[HELP], HELP_TARGET),
        line(TSHARK_HELP, timed[TSHARK_HELP]),
        line(NMAP_VERSION, timed[NMAP_VERSION]),
        ratio(timed[HELP], timed[TSHARK_HELP], TSHARK_HELP),
        ratio(timed[HELP], timed[NMAP_VERSION], NMAP_VERSION),
        line(SUB_HELP, timed[SUB_HELP]),
        line(INGEST, timed[INGEST], INGEST_TARGET),
        line(TSHARK_READ, timed[TSHARK_READ]),
        ratio(timed[INGEST], timed[TSHARK_READ], "tshark -r ONE.pcap"),
        line(PYTHON, timed[PYTHON]),
        line(LIBRARIES, timed[LIBRARIES]),
    ]
    print("\n".join(report))
    print(f"machine load (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if any("FAIL" in said for said in report):
        sys.exit(1)


if __name__ == "__main__":
    main()
