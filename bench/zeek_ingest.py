"""Benchmark: ingest large Zeek conn, smtp, socks and dns logs; lines per second and peak RSS.

Generates the logs (Zeek's TSV, realistic values) in a temporary directory,
never in the repository, then times a subprocess that ingests each one. The
subprocess is ``INGEST_COMMAND``, the real ``rolecall --db {db} ingest zeek
{log}`` into a fresh SQLite inventory (roles derived included); ``--reader-only``
times the reader alone, to show where the time goes. Each log is ingested at a
fifth of its size and at full size, to show that memory stays flat as the file
grows (the full run's peak RSS over the fifth's is printed). Peak RSS is given
for the largest process and for all of them together (a large conn log is
parsed in a second process), sampled every 20 ms. After each conn ingest the
stored flows are counted and their connections checked against the lines
written.

Beside each figure, in the same run: what a user would otherwise run to get
the same fields out of the log. ``zeek-cut`` is not installed here; it is a
column picker that looks the names up in the ``#fields`` header, so
``AWK_COMMAND`` does just that with ``awk -F'\t'`` (the fields rolecall reads,
``READ_FIELDS``, printed to /dev/null). The ratio is rolecall's lines per
second over awk's (wall, then CPU): awk stores nothing and derives nothing,
so it is the floor of reading the log, not a like-for-like tool.

The floor of storing it: after each full-size conn and smtp ingest, the rows it
stored in the log's own table (flow, smtp) are inserted again, by SQLite alone,
into an empty copy of that table (the store's columns, unique key, indexes and
pragmas) in one transaction, ``insert_floor``. Those rows are what the
contract's exports hold, so no reader, however fast, stores the log quicker
than that; it is printed as lines of the log per second beside the target.

``--store-only`` shows the other side: each full-size log's records are read
into memory first, untimed, and then only what the ingest does with them is
timed (storing, the file's digest, derivation; ``store_alone``), in this
process. No reader, however fast, makes the ingest quicker than that.

The conn log spans two UTC days, lines evenly spread in time: 4000 clients
(10.x), each with 40 web sites of its own drawn from 3000 servers with a
popularity skew (a few servers are in many clients' lists). Per line: 50%
HTTPS to one of the client's sites (uniformly), 10% HTTP to one of them, 40%
split evenly between two DNS resolvers (UDP 53) and a mail relay (TCP 25 and
587). So a client has at most 84 distinct (server, port) pairs a day: at 5M
lines there are ~283,000 flow keys a day (8.8 connections each), at 1M lines
~176,000 (2.8 each). The smtp log is one day of transactions from a thousand
clients to five relays, one or two recipients each; the socks log one day of
requests from 2000 clients to three proxies (a third by name, some refused);
the dns log one day of queries from 4000 clients to two resolvers for 20,000
names (A, AAAA, MX and PTR; A answers with CNAMEs, some NXDOMAIN).

    python -m bench.zeek_ingest [--lines 5000000] [--smtp-lines 500000]
        [--socks-lines 500000] [--dns-lines 1000000] [--logs conn,smtp,socks,dns]
        [--reader-only | --store-only]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

from bench.process_tree import Measured, run_measured
from bench.rolecall_command import rolecall_command
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import ReadWarning
from tests.zeek_helpers import tsv_header

REPO = Path(__file__).resolve().parent.parent
INGEST_COMMAND = [*rolecall_command(), "--db", "{db}", "-q", "ingest", "zeek", "{log}"]
READER_COMMAND = [sys.executable, "-m", "bench.zeek_ingest", "--consume", "{log}"]

READ_FIELDS = {
    "conn": "ts id.orig_h id.resp_h id.resp_p proto conn_state orig_pkts resp_pkts "
    "orig_ip_bytes resp_ip_bytes orig_bytes resp_bytes",
    "smtp": "ts id.orig_h id.orig_p id.resp_h id.resp_p trans_depth helo mailfrom rcptto date "
    "from to msg_id subject last_reply user_agent tls",
    "socks": "ts id.orig_h id.orig_p id.resp_h id.resp_p version user password status "
    "request.host request.name request_p bound.host bound_p",
    "dns": "ts id.orig_h id.resp_h id.resp_p proto query qtype_name rcode_name answers",
}
"""The fields rolecall reads from each log (what the awk baseline prints)."""
# zeek-cut's job, in awk: the columns named in -v want, looked up in the #fields header.
AWK_PROGRAM = (
    'BEGIN { n = split(want, names, " ") } '
    "/^#fields/ { for (i = 2; i <= NF; i++) column[$i] = i - 1; next } "
    "/^#/ { next } "
    "{ out = $(column[names[1]]); for (k = 2; k <= n; k++) out = out OFS $(column[names[k]]); "
    "print out }"
)
START = 1795392000.0  # 2026-11-23 00:00:00 UTC


def conn_lines(count: int, rng: random.Random) -> Iterator[str]:
    """Conn lines over two days: 4000 clients using two resolvers, a mail relay and the web.

    Each client browses its own 40 sites, drawn by popularity (Zipf-like), so
    a (client, server, port) sees several connections a day, as on a real network.
    """
    clients = [f"10.{i // 250}.{i % 250}.{rng.randrange(1, 250)}" for i in range(4000)]
    servers = [f"198.51.{rng.randrange(0, 100)}.{rng.randrange(1, 250)}" for _ in range(3000)]
    # web servers by popularity (Zipf-like): a few sites get most connections
    sites = [[servers[int(3000 * rng.random() ** 3)] for _ in range(40)] for _ in range(4000)]
    services = [("udp", "53", "dns", "192.0.2.53"), ("udp", "53", "dns", "192.0.2.54")]
    services += [("tcp", "25", "smtp", "192.0.2.25"), ("tcp", "587", "smtp", "192.0.2.25")]
    states = [("SF", "ShADadFf"), ("S0", "S"), ("REJ", "Sr"), ("SF", "Dd"), ("RSTO", "ShADR")]
    step = 2 * 86400 / max(count, 1)
    for n in range(count):
        pick, who = rng.random(), rng.randrange(4000)
        if pick < 0.5:
            proto, port, service, server = ("tcp", "443", "ssl", sites[who][int(pick * 80)])
        elif pick < 0.6:
            proto, port, service, server = ("tcp", "80", "http", sites[who][int(pick * 400) % 40])
        else:
            proto, port, service, server = services[int(pick * 100) % 4]
        state, history = states[n % 5] if proto == "tcp" else ("SF", "Dd")
        opk, rpk = rng.randrange(1, 40), (0 if state == "S0" else rng.randrange(1, 60))
        ob, rb = opk * 80, rpk * 700
        yield (
            f"{START + n * step:.6f}\tC{n:017x}\t{clients[who]}\t"
            f"{rng.randrange(1024, 65535)}\t{server}\t{port}\t{proto}\t"
            f"{service if rpk else '-'}\t{rng.random() * 20:.6f}\t{ob}\t{rb}\t{state}\tT\tF\t0\t"
            f"{history}\t{opk}\t{ob + opk * 40}\t{rpk}\t{rb + rpk * 40}\t(empty)\n"
        )


def smtp_lines(count: int, rng: random.Random) -> Iterator[str]:
    """SMTP transactions from a few hundred clients to a handful of relays."""
    agents = ["Microsoft Outlook 16.0", "The Bat! (v9.4.2)", "Apple Mail (2.3654)", "-"]
    step = 86400 / max(count, 1)
    for n in range(count):
        client = f"10.1.{rng.randrange(0, 4)}.{rng.randrange(1, 250)}"
        rcpts = ",".join(
            f"user{rng.randrange(10**6)}@example.{t}" for t in ("com", "net")[: n % 2 + 1]
        )
        yield (
            f"{START + n * step:.6f}\tC{n:017x}\t{client}\t{rng.randrange(1024, 65535)}\t"
            f"192.0.2.{n % 5 + 1}\t25\t{n % 3 + 1}\tws{n % 997}.example.org\t"
            f"sender{n % 5000}@example.org\t{rcpts}\tMon, 23 Nov 2026 01:02:03 +0000\t"
            f"<sender{n % 5000}@example.org>\t<{rcpts.split(',')[0]}>\t-\t-\t"
            f"<{n:x}@example.org>\t-\tOffer number {n % 50}\t-\t-\t-\t250 2.0.0 Ok: queued\t"
            f"192.0.2.{n % 5 + 1},{client}\t{agents[n % 4]}\tF\tF{n:017x}\n"
        )


def socks_lines(count: int, rng: random.Random) -> Iterator[str]:
    """SOCKS requests over a day: 2000 clients, three proxies, a third of targets by name."""
    states = ["succeeded"] * 8 + ["general SOCKS server failure", "connection refused"]
    step = 86400 / max(count, 1)
    for n in range(count):
        client = f"10.2.{rng.randrange(0, 8)}.{rng.randrange(1, 250)}"
        target = f"198.51.{rng.randrange(0, 100)}.{rng.randrange(1, 250)}"
        host, name = ("-", f"mx{n % 4000}.example.net") if n % 3 == 0 else (target, "-")
        user = f"user{n % 50}" if n % 4 == 0 else "-"
        status = states[n % 10]
        bound = f"192.0.2.{n % 3 + 10}\t-\t{rng.randrange(1024, 65535)}"
        if status != "succeeded":
            bound = "-\t-\t-"
        yield (
            f"{START + n * step:.6f}\tC{n:017x}\t{client}\t{rng.randrange(1024, 65535)}\t"
            f"192.0.2.{n % 3 + 10}\t1080\t5\t{user}\t-\t{status}\t{host}\t{name}\t"
            f"{(25, 587, 443)[n % 3]}\t{bound}\n"
        )


def dns_lines(count: int, rng: random.Random) -> Iterator[str]:
    """DNS queries over a day: 4000 clients, two resolvers, 20,000 names by popularity."""
    names = [f"host{i}.example{i % 300}.com" for i in range(20000)]
    kinds = [("A", 1)] * 12 + [("AAAA", 28)] * 4 + [("MX", 15), ("PTR", 12)] + [("A", 1)] * 2
    clients = [f"10.{i // 250}.{i % 250}.{rng.randrange(1, 250)}" for i in range(4000)]
    step = 86400 / max(count, 1)
    for n in range(count):
        client = clients[rng.randrange(4000)]
        popular = int(20000 * rng.random() ** 3)
        name, index = names[popular], popular % 250
        qtype, code = kinds[n % 20]
        if n % 50 == 0:
            rcode, answers, ttls = "3\tNXDOMAIN", "-", "-"
        elif qtype == "A":
            cname = f"cdn{index % 7}.example.net," if index % 4 == 0 else ""
            answers = f"{cname}198.51.{index % 100}.{index + 1},203.0.113.{index + 1}"
            rcode, ttls = "0\tNOERROR", ",".join(["300.000000"] * answers.count(",") + ["60.0"])
        elif qtype == "AAAA":
            rcode, answers, ttls = "0\tNOERROR", f"2001:db8::{index:x}", "300.000000"
        elif qtype == "MX":
            rcode, answers, ttls = "0\tNOERROR", f"mx{index}.example.net", "3600.000000"
        else:
            rcode, answers, ttls = "0\tNOERROR", f"ptr{index}.example.org", "86400.000000"
        yield (
            f"{START + n * step:.6f}\tC{n:017x}\t{client}\t{rng.randrange(1024, 65535)}\t"
            f"192.0.2.{53 + n % 2}\t53\tudp\t{n % 65536}\t0.000{n % 900 + 100}\t{name}\t1\t"
            f"C_INTERNET\t{code}\t{qtype}\t{rcode}\tF\tF\tT\tT\t0\t{answers}\t{ttls}\tF\n"
        )


def write_log(path: Path, head: str, lines: Iterator[str]) -> None:
    """Write a log: its header, its lines, and Zeek's #close line."""
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(head)
        out.writelines(lines)
        out.write("#close\t2026-11-25-00-00-00\n")


def run_ingest(command: list[str], log: Path, db: Path) -> tuple[float, float, int, int]:
    """Run the command on one log; return wall and CPU seconds, and peak RSS in KiB
    (the largest process's, and the largest sum over it and its children)."""
    argv = [part.format(log=log, db=db) for part in command]
    cost = run_measured(argv, Path(os.devnull), {**os.environ, "PYTHONPATH": str(REPO)})
    if cost.status != 0:
        raise SystemExit(f"ingest of {log} failed: {argv}")
    return cost.wall, cost.cpu, cost.largest_rss, cost.tree_rss


def stored_flows(db: Path) -> tuple[int, int]:
    """How many flow rows an ingest stored and how many connections they add up to."""
    with sqlite3.connect(db) as connection:
        rows, connections = connection.execute(
            "SELECT count(*), coalesce(sum(connections), 0) FROM flow"
        ).fetchone()
    return int(rows), int(connections)


def insert_floor(db: Path, table: str) -> tuple[int, float]:
    """How many rows ``table`` holds in ``db``, and the seconds SQLite alone takes to insert
    them into an empty copy of the table (same schema and pragmas), in one transaction."""
    # Loaded here, as in store_alone: --consume imports this module too.
    from rolecall.inventory.database import sqlite_pragmas  # noqa: PLC0415

    copy = db.with_name(f"floor-{table}.db")
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(copy)) as target:
        sqlite_pragmas(target, None)  # the store's own, as on each of its connections
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL", (table,)
        ):
            target.execute(sql)
        rows = source.execute(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 (FLOOR_TABLES)
        insert = f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows.description))})"  # noqa: S608
        count, seconds = 0, 0.0
        # Read a slice at a time and time only the inserts: memory stays flat, and reading
        # the first database is not part of what storing costs.
        while chunk := rows.fetchmany(FLOOR_CHUNK):
            started = time.perf_counter()
            target.executemany(insert, chunk)
            seconds += time.perf_counter() - started
            count += len(chunk)
        started = time.perf_counter()
        target.commit()
        seconds += time.perf_counter() - started
    for path in copy.parent.glob(f"{copy.name}*"):
        path.unlink()
    return count, seconds


def store_alone(log: Path, db: Path) -> tuple[int, float]:
    """How many records ``log`` holds, and the seconds an ingest of them into a new inventory
    takes once they are in memory: everything ``rolecall ingest zeek`` does but reading."""
    # Loaded here: ``--consume`` (the timed reader of --reader-only) imports this module too.
    from rolecall.inventory.store import Store  # noqa: PLC0415
    from rolecall.orchestrator.progress import Reporter  # noqa: PLC0415
    from rolecall.orchestrator.runs.ingest import ingest_files  # noqa: PLC0415

    settings = ZeekSettings()
    records = list(read_zeek(log, settings))
    # Out of the collector's sight, as they would be if they streamed in: otherwise every
    # full collection during the ingest walks all of them.
    gc.collect()
    gc.freeze()
    store = Store.open(str(db))
    try:
        started = time.perf_counter()
        summary = ingest_files(
            store,
            "zeek",
            [log],
            lambda path: read_zeek(path, settings),
            Reporter(quiet=True),
            first=iter(records),
        )
        seconds = time.perf_counter() - started
    finally:
        store.close()
        gc.unfreeze()
    if summary.failures or summary.counts["warnings"]:
        raise SystemExit(f"ingest of {log} failed: {summary.failures or summary.warnings}")
    return len(records), seconds


def bench_store_alone(kind: str, lines: int, folder: Path, rng: random.Random) -> None:
    """Write one kind of log, time everything its ingest does but reading, print it."""
    log = folder / f"{kind}.log"
    write_log(log, tsv_header(kind), LOGS[kind](lines, rng))
    records, seconds = store_alone(log, folder / f"{kind}.db")
    said = (
        f"{kind}.log: {lines} lines, {records} records read into memory first; storing, "
        f"digest and derivation alone: {seconds:.2f} s = {lines / seconds:,.0f} lines/s"
    )
    if kind in TARGETS:
        within = "within" if lines / seconds >= TARGETS[kind] else "beyond"
        said += f"; the target ({TARGETS[kind]:,} lines/s) is {within} what they allow"
    print(said)
    for path in (log, *folder.glob("*.db*")):
        path.unlink()


def consume(log: Path) -> None:
    """Read a log fully with read_zeek (the subprocess side) and print what came out."""
    records = warnings = 0
    for item in read_zeek(log, ZeekSettings()):
        if isinstance(item, ReadWarning):
            warnings += 1
        else:
            records += 1
    print(f"  {log.name}: {records} records, {warnings} warnings")


def run_awk(kind: str, log: Path) -> Measured:
    """Run the awk baseline (zeek-cut's job) over one log, printing the fields rolecall reads."""
    argv = ["awk", "-F", "\t", "-v", "OFS=\t", "-v", f"want={READ_FIELDS[kind]}", AWK_PROGRAM]
    argv.append(str(log))
    cost = run_measured(argv, Path(os.devnull))
    if cost.status != 0:
        raise SystemExit(f"awk over {log} failed: {argv}")
    return cost


def report(command: list[str], kind: str, name: str, lines: int, log: Path, db: Path) -> int:
    """Ingest one log, run awk over it, print both (CPU time too: the machine may be shared).

    Returns the ingest's peak RSS (KiB, all processes).
    """
    seconds, cpu, rss, tree_rss = run_ingest(command, log, db)
    awk = run_awk(kind, log)
    print(
        f"{name}: {lines} lines in {seconds:.2f} s = {lines / seconds:,.0f} lines/s "
        f"({lines / cpu:,.0f} per CPU second), peak RSS {rss / 1024:.1f} MiB "
        f"(all processes {tree_rss / 1024:.1f} MiB)"
    )
    print(
        f"  awk over the same fields: {lines / awk.wall:,.0f} lines/s "
        f"({lines / max(awk.cpu, 1e-6):,.0f} per CPU second), peak RSS "
        f"{awk.largest_rss / 1024:.1f} MiB; rolecall/awk {awk.wall / seconds:.3g}x wall, "
        f"{awk.cpu / cpu:.3g}x CPU"
    )
    if kind in TARGETS and name == f"{kind}.log":
        met = "met" if lines / seconds >= TARGETS[kind] else "not met"
        print(f"  target {TARGETS[kind]:,} lines/s (issue 21): {met}")
    if db.exists() and kind == "conn":
        rows, connections = stored_flows(db)
        if connections != lines:
            raise SystemExit(f"{name}: the stored flows add up to {connections} connections")
        print(f"  {rows} flow rows stored ({lines / max(rows, 1):.1f} lines per row)")
    if db.exists() and kind in TARGETS and name == f"{kind}.log":
        table = FLOOR_TABLES[kind]
        rows, floor = insert_floor(db, table)
        within = "within" if lines / floor >= TARGETS[kind] else "beyond"
        print(
            f"  SQLite alone inserting the {rows} {table} rows stored (same schema, one "
            f"transaction): {floor:.2f} s = {lines / floor:,.0f} lines/s; the target is "
            f"{within} what storing alone allows"
        )
    return tree_rss


def bench_log(command: list[str], kind: str, lines: int, folder: Path, rng: random.Random) -> None:
    """Write one kind of log at a fifth of ``lines`` and at full size; ingest both; compare."""
    make_lines = LOGS[kind]
    small, full = folder / "small" / f"{kind}.log", folder / f"{kind}.log"
    small.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    write_log(small, tsv_header(kind), make_lines(lines // 5, rng))
    write_log(full, tsv_header(kind), make_lines(lines, rng))
    print(
        f"{kind}.log generated in {time.perf_counter() - started:.1f} s "
        f"({full.stat().st_size / 2**20:.0f} MiB)"
    )
    fifth_rss = report(command, kind, f"{kind}.log (1/5)", lines // 5, small, folder / "small.db")
    full_rss = report(command, kind, f"{kind}.log", lines, full, folder / f"{kind}.db")
    print(f"  peak RSS full size / fifth: {full_rss / max(fifth_rss, 1):.2f}")
    for path in (small, full, *folder.glob("*.db*")):
        path.unlink()


TARGETS = {"conn": 250_000, "smtp": 100_000}
"""Lines per second each log's full-size ingest is to reach (issue 21; socks and dns have none)."""
FLOOR_TABLES = {"conn": "flow", "smtp": "smtp"}
"""The table each targeted log's records are stored in (what ``insert_floor`` re-inserts)."""
FLOOR_CHUNK = 50_000
# Each log's columns and header are Zeek's own, as the tests write them (tests/zeek_helpers).
LOGS: dict[str, Callable[[int, random.Random], Iterator[str]]] = {
    "conn": conn_lines,
    "smtp": smtp_lines,
    "socks": socks_lines,
    "dns": dns_lines,
}


def main() -> None:
    """Generate the logs, ingest them, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5_000_000, help="conn.log lines")
    parser.add_argument("--smtp-lines", type=int, default=0, help="smtp.log lines (lines/10)")
    parser.add_argument("--socks-lines", type=int, default=0, help="socks.log lines (lines/10)")
    parser.add_argument("--dns-lines", type=int, default=0, help="dns.log lines (lines/5)")
    parser.add_argument("--logs", default=",".join(LOGS), help="which logs, comma-separated")
    alone = parser.add_mutually_exclusive_group()
    alone.add_argument("--reader-only", action="store_true", help="time read_zeek alone")
    alone.add_argument(
        "--store-only", action="store_true", help="time all an ingest does but reading"
    )
    parser.add_argument("--consume", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    counts = {
        "conn": args.lines,
        "smtp": args.smtp_lines or args.lines // 10,
        "socks": args.socks_lines or args.lines // 10,
        "dns": args.dns_lines or args.lines // 5,
    }
    kinds = [kind for kind in args.logs.split(",") if kind]
    if unknown := set(kinds) - set(LOGS):
        parser.error(f"unknown logs: {', '.join(sorted(unknown))} (known: {', '.join(LOGS)})")
    command = READER_COMMAND if args.reader_only else INGEST_COMMAND
    said = "store_alone, in this process" if args.store_only else " ".join(command)
    print(f"command: {said}; load average {os.getloadavg()[0]:.2f}")
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="rolecall-bench-") as tmp:
        for kind in kinds:
            if args.store_only:
                bench_store_alone(kind, counts[kind], Path(tmp), rng)
            else:
                bench_log(command, kind, counts[kind], Path(tmp), rng)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
