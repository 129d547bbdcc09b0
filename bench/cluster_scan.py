"""Benchmark: one lab scanned by nmap, a local scan, one site worker and two, in one run.

The lab's addresses answer after a real round-trip time (bench.delay_line: this kernel
has no netem), as a site's network does; the broker (Redis) and the inventory
(PostgreSQL) are throwaway servers on loopback. Port discovery only (`--probes none`),
like the bare nmap it is compared with. Prints addresses per second of each, the
per-chunk queue overhead from the chunks' queued/started/ended stamps and the moment the
coordinator printed each chunk, and two workers against one; exit 1 if a target is missed.
Storing a chunk's records (from its `ended` stamp to the commit the worker logs) is work a
local scan does too, so it is shown apart and not counted as queue overhead. Two workers
are compared by the workers' addresses per second (first chunk queued to last committed);
the command's wall time, which adds the fixed cost of starting `rolecall` and the final
derivation, is printed beside it.
Runs as root in a network namespace of its own (it re-executes itself under `unshare -n`):
only addresses and ports it serves itself, nothing leaves the machine.

    python -m bench.cluster_scan [--addresses 4096] [--chunks 16] [--rtt-ms 40]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import netaddr

from bench.delay_line import delayed_lab, round_trip
from bench.rolecall_command import rolecall_command
from rolecall.inventory.scan_chunks import Chunk
from rolecall.inventory.store import Store
from rolecall.probes.nmap.scan import chunk_networks, nmap_arguments
from rolecall.probes.nmap.settings import NmapSettings
from tests.cluster_helpers import Worker, start_worker, write_config
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

LAB = netaddr.IPNetwork("10.9.0.0/16")
PORTS = "22,25,80,443,1080,3128,8080"
SITE = "lab"
IN_NAMESPACE = "ROLECALL_BENCH_OWN_NETWORK"
OVERHEAD_TARGET = 0.050
SPEEDUP_TARGET = 1.6
LOCAL_CHUNK = 256
"""[scan] chunk_addresses' default: the addresses of each nmap run of a local scan."""


@dataclass(frozen=True)
class ClusterRun:
    """A scan queued to workers: its wall time, its chunks, when the coordinator saw each."""

    seconds: float
    chunks: tuple[Chunk, ...]
    seen: tuple[float, ...]
    committed: dict[int, float]

    def span(self) -> float:
        """Seconds from the first chunk queued to the last one committed: the workers' time."""
        first = min(stamp(chunk.queued) for chunk in self.chunks)
        return max(self.committed.values()) - first


def lab_targets(addresses: int) -> list[str]:
    """The first addresses of the lab, as CIDR blocks."""
    first = LAB.first
    return [str(cidr) for cidr in netaddr.IPRange(first, first + addresses - 1).cidrs()]


def lab_services(addresses: int, ports: Sequence[int]) -> list[tuple[str, int]]:
    """An open port on every 16th address, the ports taken in turn."""
    return [
        (str(netaddr.IPAddress(LAB.first + index)), ports[(index // 16) % len(ports)])
        for index in range(1, addresses, 16)
    ]


def timed(command: Sequence[str]) -> float:
    """Run a command to completion (it must succeed); its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:6])}... failed:\n{done.stderr}")
    return time.perf_counter() - start


def stamp(moment: datetime | None) -> float:
    """A stored time as seconds since the epoch (naive times are UTC)."""
    if moment is None:
        raise SystemExit("a chunk ended without its started/ended stamps")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


DONE_LINE = re.compile(r"^\[([\d-]+ [\d:,]+): INFO/[^\]]*\] chunk (\d+) of run \d+ .*: done \(")


def commits(logs: Sequence[Path]) -> dict[int, float]:
    """Per chunk position, when its worker logged it stored (right after the commit)."""
    found = {}
    for log in logs:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if match := DONE_LINE.match(line):
                moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                found[int(match.group(2))] = moment.timestamp()  # the worker logs local time
    return found


def cluster_scan(config: Path, database: str, targets: Sequence[str], ports: str) -> ClusterRun:
    """`scan subnet --site` to the workers running; its time, chunks, and lines' arrival."""
    command = [*rolecall_command(), "--config", str(config), "scan", "subnet", *targets]
    command += ["--ports", ports, "--probes", "none", "--site", SITE]
    seen: list[float] = []
    start = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        assert process.stdout is not None
        errors = []
        for line in process.stderr:
            if line.startswith("scanning: "):
                seen.append(time.time())
            else:
                errors.append(line)
        out = process.stdout.read()
    seconds = time.perf_counter() - start
    found = re.search(r"\(run (\d+)\)", out)
    if process.returncode or found is None:
        raise SystemExit(f"scan subnet --site failed ({process.returncode}):\n{''.join(errors)}")
    store = Store.open(database)
    try:
        chunks = store.scan_chunks.state(int(found.group(1))).chunks
    finally:
        store.close()
    return ClusterRun(seconds, chunks, tuple(seen), {})


def overheads(run: ClusterRun) -> tuple[list[float], list[float], list[float]]:
    """Per chunk: queued (or its worker's last commit) to start, commit to seen, storing.

    A worker free before the chunk was queued waits from the queueing; one busy with an
    earlier chunk waits from that chunk's commit (which takes in ending the run, acking
    and taking the next message). The coordinator prints chunks in the order it sees them,
    so the k-th line is the k-th chunk committed (chunks seen in one poll share a moment).
    """
    pickup = []
    by_worker: dict[str, list[Chunk]] = {}
    for chunk in run.chunks:
        by_worker.setdefault(chunk.worker, []).append(chunk)
    for chunks in by_worker.values():
        chunks.sort(key=lambda chunk: stamp(chunk.started))
        free = 0.0
        for chunk in chunks:
            pickup.append(stamp(chunk.started) - max(stamp(chunk.queued), free))
            free = run.committed[chunk.position]
    committed = sorted(run.committed.values())
    seen = [line - commit for line, commit in zip(sorted(run.seen), committed, strict=True)]
    storing = [run.committed[chunk.position] - stamp(chunk.ended) for chunk in run.chunks]
    return pickup, seen, storing


def with_workers(
    count: int,
    tmp: Path,
    postgres: PostgresServer,
    broker: str,
    size: int,
    args: argparse.Namespace,
) -> ClusterRun:
    """Start count workers of the site on a fresh inventory, scan the lab with them, stop them."""
    database = postgres.create_database()
    allow = [str(LAB)]
    cluster = f"chunk_addresses = {size}\n"
    site = write_config(tmp / f"site-{count}.toml", database, broker, allow, cluster=cluster)
    coordinator = tmp / f"coordinator-{count}.toml"
    write_config(coordinator, database, broker, allow, cluster=cluster)
    workers: list[Worker] = []
    try:
        for number in range(count):
            workers.append(start_worker(site, SITE, tmp / f"worker-{count}-{number}.log"))
        run = cluster_scan(coordinator, database, lab_targets(args.addresses), args.ports)
    finally:
        for worker in workers:
            worker.stop()
    found = commits([worker.log for worker in workers])
    if len(found) != len(run.chunks):
        raise SystemExit(f"the workers logged {len(found)} of {len(run.chunks)} chunks stored")
    return ClusterRun(run.seconds, run.chunks, run.seen, found)


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def main() -> int:
    """Scan the lab four ways and print the figures; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=4096, help="lab addresses scanned")
    parser.add_argument("--chunks", type=int, default=16, help="chunks the scan is queued in")
    parser.add_argument("--ports", default=PORTS)
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="the lab's round-trip time")
    args = parser.parse_args()
    if not 16 <= args.addresses <= LAB.size - 2 or not 1 <= args.chunks <= args.addresses:
        parser.error(f"--addresses 16..{LAB.size - 2}, --chunks 1..addresses")
    if os.environ.get(IN_NAMESPACE) != "1":
        if os.geteuid() != 0:
            parser.error("run as root: the bench makes its own network namespace and lab")
        environment = {**os.environ, IN_NAMESPACE: "1"}
        command = ["unshare", "-n", "--", sys.executable, "-m", "bench.cluster_scan"]
        os.execvpe("unshare", [*command, *sys.argv[1:]], environment)  # noqa: S606 - no shell wanted
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ports = [int(port) for port in args.ports.split(",")]
    services = lab_services(args.addresses, ports)
    targets = lab_targets(args.addresses)
    size = -(-args.addresses // args.chunks)
    load_before = os.getloadavg()
    with delayed_lab(LAB, services, args.rtt_ms / 2000), tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rtt = round_trip(services[0][0], services[0][1])
        postgres, redis = PostgresServer.start(), RedisServer.start()
        try:
            settings = NmapSettings(ports=args.ports, resolve_names=False)
            nmap = ["nmap", "-oX", "-", "-p", args.ports, *nmap_arguments(settings)]
            nmap_s = timed([*nmap, *targets])
            # A local scan runs nmap once per [scan] chunk_addresses (default 256) addresses.
            nmap_chunked_s = sum(
                timed([*nmap, *(str(network) for network in chunk)])
                for chunk in chunk_networks(netaddr.IPSet(targets), LOCAL_CHUNK)
            )
            local_db = postgres.create_database()
            local = write_config(tmp / "local.toml", local_db, redis.url, [str(LAB)])
            startup_s = timed([*rolecall_command(), "--config", str(local), "runs"])
            local_s = timed(
                [*rolecall_command(), "--config", str(local), "-q", "scan", "subnet", *targets,
                 "--ports", args.ports, "--probes", "none"]
            )  # fmt: skip
            one = with_workers(1, tmp, postgres, redis.url, size, args)
            two = with_workers(2, tmp, postgres, redis.url, size, args)
        finally:
            redis.stop()
            postgres.stop()
    load_after = os.getloadavg()

    n = args.addresses
    print(
        f"lab: {n} addresses ({', '.join(targets)}), ports {args.ports}, {len(services)} open;"
        f" round trip {rtt * 1000:.1f} ms (asked {args.rtt_ms:g}); broker and database on"
        f" loopback; {len(one.chunks)} chunks of {size}"
    )
    print(f"load average before {load_before}, after {load_after} (2 cores, shared)")
    rows = [
        ("nmap alone (same ports)", nmap_s),
        (f"nmap in runs of {LOCAL_CHUNK} addresses", nmap_chunked_s),
        ("rolecall scan subnet (local)", local_s),
        ("one worker (--site)", one.seconds),
        ("two workers (--site)", two.seconds),
    ]
    for label, seconds in rows:
        print(
            f"{label:30} {seconds:7.2f} s {n / seconds:8.1f} addresses/s"
            f"   x{nmap_s / seconds:5.2f} of nmap, x{local_s / seconds:5.2f} of local"
        )
    print(
        f"fixed cost of the rolecall command (`rolecall runs`: start, imports, open the"
        f" inventory) {startup_s:.2f} s, in every rolecall row above"
    )
    for label, run in (("one worker", one), ("two workers", two)):
        print(
            f"{label:12} chunks queued to last committed {run.span():6.2f} s"
            f" {n / run.span():8.1f} addresses/s (command wall {run.seconds:.2f} s)"
        )
    pickup, seen, storing = (a + b for a, b in zip(overheads(one), overheads(two), strict=True))
    overhead = statistics.median(pickup) + statistics.median(seen)
    print(
        f"queue overhead per chunk (median): published/free to started"
        f" {statistics.median(pickup) * 1000:.1f} ms (max {max(pickup) * 1000:.1f}),"
        f" committed to seen {statistics.median(seen) * 1000:.1f} ms"
        f" (max {max(seen) * 1000:.1f}); storing a chunk (work, not overhead)"
        f" {statistics.median(storing) * 1000:.1f} ms"
    )
    print(f"wall time: two workers x{one.seconds / two.seconds:.2f} of one (with the fixed cost)")
    speedup = one.span() / two.span()
    overhead_ok, speedup_ok = overhead < OVERHEAD_TARGET, speedup >= SPEEDUP_TARGET
    print(
        f"{verdict(overhead_ok)}: queue overhead {overhead * 1000:.1f} ms"
        f" (target < {OVERHEAD_TARGET * 1000:.0f} ms)"
    )
    print(
        f"{verdict(speedup_ok)}: two workers x{speedup:.2f} of one's addresses per second"
        f" (target >= {SPEEDUP_TARGET})"
    )
    return 0 if overhead_ok and speedup_ok else 1


if __name__ == "__main__":
    sys.exit(main())
