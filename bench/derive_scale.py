"""Benchmark: derive roles, groups, findings and history for a large inventory; prints seconds.

Generates an inventory of ASSETS hosts and OBSERVATIONS observations (plus mail
transactions and flows) directly in the tables, in SQLite (a file in a temporary
directory) or PostgreSQL (a throwaway local cluster, `--database postgresql`), then
times ``Store.derive`` from scratch, again with nothing new (a no-op), and after 1%
new evidence (incremental). Targets on a 2-core machine, either backend: full < 60 s,
incremental < 5 s. The mix is passive-heavy, as a site's evidence is: most
observations are DNS queries, HTTP hosts and TLS names of clients; a fifth of the
hosts are servers probed actively. Before each timed derivation what was written
before it is flushed to disk (``settle``), so that the kernel's write-back of the
generated gigabytes does not throttle the derivation's own writes. Last, in the same
run, the database's own shell (sqlite3, psql) aggregates the evidence once as one would
by hand (``REFERENCE_SQL``: per host its observation kinds and answered server ports):
the derivations are printed as multiples of that, a figure that moves less than seconds
with the machine's speed. It is a floor, not a like-for-like tool. Needs the sqlite3
shell (``apt install sqlite3``); psql comes with PostgreSQL.

    python -m bench.derive_scale [--database sqlite|postgresql] [--assets 100000]
        [--observations 10000000]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.inventory_backends import (
    BulkWriter,
    add_database_option,
    bulk_writer,
    inventory,
    load_note,
    settle,
    shell_command,
)
from rolecall.inventory.settings import DeriveSettings, GroupPolicy, GroupSpec
from rolecall.inventory.store import Store

START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 30
SERVER_PROTOCOLS = ("http", "https", "ssh", "dns", "smtp", "ftp", "imap")
FULL_TARGET, INCREMENTAL_TARGET = 60.0, 5.0
# What one would run by hand to see each host's evidence: its kinds of observation and
# the server ports it answered on, with their first and last sightings.
REFERENCE_SQL = (
    "SELECT address, kind, source, min(first_seen), max(last_seen), count(*) FROM observation"
    " GROUP BY address, kind, source;"
    " SELECT server, server_port, transport, min(first_seen), max(last_seen), count(*)"
    " FROM flow WHERE answered GROUP BY server, server_port, transport;"
)
OBSERVATION_COLUMNS = (
    "address",
    "kind",
    "source",
    "port",
    "transport",
    "value",
    "value_key",
    "detail",
    "first_seen",
    "last_seen",
    "count",
)
SMTP_COLUMNS = (
    "ts",
    "client",
    "client_port",
    "server",
    "server_port",
    "trans_depth",
    "helo",
    "mail_from",
    "rcpt_to",
    "refused_rcpt",
    "subject",
    "from",
    "to",
    "date",
    "msg_id",
    "user_agent",
    "last_reply",
    "tls",
    "via_proxy",
    "source",
)
FLOW_COLUMNS = (
    "client",
    "server",
    "server_port",
    "transport",
    "day",
    "source",
    "connections",
    "packets",
    "bytes",
    "first_seen",
    "last_seen",
    "answered",
    "seq",
)
SETTINGS = DeriveSettings(
    groups=(
        GroupSpec("servers", networks=("10.1.0.0/16",)),
        GroupSpec(
            "workstations",
            networks=("10.0.0.0/8",),
            exclude_groups=("servers",),
            policy=GroupPolicy(mail_relays=("10.1.0.25",)),
        ),
        GroupSpec("mail-and-web", ports=("25", "80")),
    ),
    inside=("10.0.0.0/8",),
    approved_relays=("192.0.2.25",),
)


def stamp(moment: datetime) -> str:
    """A time as the store keeps it in SQLite (and PostgreSQL reads it in a UTC session)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def address(index: int) -> str:
    """Host number `index`: servers in 10.1/16, the rest in 10.2/16 and up."""
    return f"10.{1 + index // 65536 + (index >= 20000)}.{index // 256 % 256}.{index % 256}"


def _when(rng: random.Random, day_from: int = 0, days: int = DAYS) -> datetime:
    """A random moment in the given days after START."""
    return START + timedelta(days=day_from + rng.random() * days)


def _client_obs(
    rng: random.Random, host: str, count: int, tag: str, day_from: int = 0, days: int = DAYS
) -> Iterator[tuple[object, ...]]:
    """Passive client facts: DNS queries, HTTP hosts, TLS names, user agents."""
    for n in range(count):
        kind = rng.choices(
            ("dns-query", "http-host", "tls-sni", "http-user-agent"), (50, 25, 20, 5)
        )[0]
        port = {"dns-query": 53, "http-host": 80, "tls-sni": 443, "http-user-agent": 80}[kind]
        value = f"site{rng.randrange(50_000)}.example.{tag}{n}"
        first = _when(rng, day_from, days)
        yield (
            host,
            kind,
            "pcap",
            port,
            "tcp",
            value,
            f"{tag}{n}",
            "{}",
            stamp(first),
            stamp(first + timedelta(minutes=5)),
            1,
        )


def _server_obs(rng: random.Random, host: str) -> Iterator[tuple[object, ...]]:
    """Active facts about a server: ports, protocols, relay and auth tests."""
    seen = stamp(_when(rng))
    for n, protocol in enumerate(rng.sample(SERVER_PROTOCOLS, 3)):
        port = {"http": 80, "https": 443, "ssh": 22, "dns": 53, "smtp": 25, "ftp": 21, "imap": 143}[
            protocol
        ]
        yield (host, "port-open", "scan", port, "tcp", protocol, f"p{n}", "{}", seen, seen, 1)
        yield (host, "protocol", "probe", port, "tcp", protocol, f"q{n}", "{}", seen, seen, 1)
        if protocol == "smtp":
            verdict = "open-relay" if rng.random() < 0.01 else "relay-refused"
            yield (host, "smtp-relay", "probe", 25, "tcp", verdict, "r", "{}", seen, seen, 1)
            if rng.random() < 0.05:
                yield (
                    host,
                    "smtp-plaintext-auth",
                    "probe",
                    25,
                    "tcp",
                    "PLAIN LOGIN",
                    "a",
                    "{}",
                    seen,
                    seen,
                    1,
                )
        if protocol == "ftp":
            verdict = "allowed" if rng.random() < 0.05 else "refused"
            yield (host, "ftp-anonymous", "probe", 21, "tcp", verdict, "f", "{}", seen, seen, 1)


def observations(rng: random.Random, assets: int, total: int) -> Iterator[tuple[object, ...]]:
    """About `total` observations over `assets` hosts, host by host."""
    per_host = total // assets
    for index in range(assets):
        host = address(index)
        rows = list(_server_obs(rng, host)) if index < 20_000 else []
        if index % 50 == 0:
            seen = stamp(_when(rng))
            rows.append(
                (
                    host,
                    "fw-smtp-deny",
                    "firewall",
                    25,
                    "tcp",
                    "203.0.113.9",
                    "d",
                    "{}",
                    seen,
                    seen,
                    3,
                )
            )
        rows.extend(_client_obs(rng, host, per_host - len(rows), "c"))
        yield from rows


def smtp_rows(
    rng: random.Random, assets: int, count: int, day_from: int, days: int, offset: int
) -> Iterator[tuple[object, ...]]:
    """Mail transactions: workstations through the relay, a few servers straight out."""
    for n in range(count):
        index = rng.randrange(20_000, assets) if rng.random() < 0.97 else rng.randrange(20_000)
        direct = index < 20_000
        server = "198.51.100.7" if direct else "10.1.0.25"
        agent = "The Bat! (v9)" if direct and rng.random() < 0.3 else "Microsoft Outlook 16.0"
        yield (
            stamp(_when(rng, day_from, days)),
            address(index),
            40000 + n % 20000,
            server,
            25,
            offset + n,
            "pc",
            "a@corp.test",
            '["b@corp.test"]',
            "[]",
            "s",
            "a",
            "b",
            "",
            "",
            agent,
            "250 OK",
            0,
            "",
            "zeek",
        )


def flow_rows(
    rng: random.Random, assets: int, count: int, day_from: int, days: int, offset: int
) -> Iterator[tuple[object, ...]]:
    """Flows: clients to servers, a tenth of them to port 25."""
    for n in range(count):
        when = _when(rng, day_from, days)
        port = 25 if n % 10 == 0 else rng.choice((80, 443, 53))
        yield (
            address(rng.randrange(20_000, assets)),
            address(rng.randrange(20_000)),
            port,
            "tcp",
            when.date().isoformat(),
            "zeek",
            1,
            10,
            1000,
            stamp(when),
            stamp(when),
            1,
        )


def load(database: str, args: argparse.Namespace, rng: random.Random) -> None:
    """Fill a fresh inventory with generated evidence."""
    Store.open(database).close()
    writer = bulk_writer(database)
    # Indexes are cheaper built once after the load than kept up row by row.
    writer.execute("DROP INDEX ix_observation_kind")
    writer.execute("DROP INDEX ix_observation_last_seen")
    writer.insert(
        "observation", OBSERVATION_COLUMNS, observations(rng, args.assets, args.observations)
    )
    writer.execute("CREATE INDEX ix_observation_kind ON observation (kind)")
    writer.execute("CREATE INDEX ix_observation_last_seen ON observation (last_seen)")
    writer.execute(
        "INSERT INTO asset (address, first_seen, last_seen) SELECT address, min(first_seen),"
        " max(last_seen) FROM observation GROUP BY address"
    )
    writer.execute(
        "INSERT INTO service (address, port, transport, protocol, product, version, auth,"
        " banner, source, first_seen, last_seen) SELECT address, port, transport, value, '', '',"
        " '', '', source, first_seen, last_seen FROM observation WHERE kind = 'port-open'"
    )
    add_traffic(writer, args, rng, 0, DAYS, args.smtp, args.flows, 0)
    writer.commit()


def add_traffic(
    writer: BulkWriter,
    args: argparse.Namespace,
    rng: random.Random,
    day_from: int,
    days: int,
    smtp: int,
    flows: int,
    offset: int,
) -> None:
    """Insert mail transactions and flows."""
    writer.insert("smtp", SMTP_COLUMNS, smtp_rows(rng, args.assets, smtp, day_from, days, offset))
    # Numbered as the store numbers a write of flows (evidence_delta.next_write_seq).
    ((seq,),) = writer.execute("SELECT coalesce(max(seq), 0) + 1 FROM flow")
    writer.insert(
        "flow",
        FLOW_COLUMNS,
        ((*row, seq) for row in flow_rows(rng, args.assets, flows, day_from, days, offset)),
        skip_duplicates=True,
    )


def add_one_percent(database: str, args: argparse.Namespace, rng: random.Random) -> None:
    """1% new evidence: a day later, new facts about random hosts, new mail and flows."""
    count = args.observations // 100
    writer = bulk_writer(database)
    rows: list[tuple[object, ...]] = []
    for n in range(count):
        host = address(rng.randrange(args.assets))
        rows.extend(_client_obs(rng, host, 1, f"new{n}-", DAYS, 1))
    writer.insert("observation", OBSERVATION_COLUMNS, rows)
    writer.execute(
        "UPDATE asset SET last_seen = ? WHERE address IN (SELECT address FROM observation"
        " WHERE first_seen >= ?)",
        (stamp(START + timedelta(days=DAYS + 1)), stamp(START + timedelta(days=DAYS))),
    )
    add_traffic(writer, args, rng, DAYS, 1, args.smtp // 100, args.flows // 100, 10**8)
    writer.commit()


def reference(database: str) -> float:
    """Seconds the database's own shell takes for REFERENCE_SQL (output thrown away)."""
    settle()
    started = time.perf_counter()
    subprocess.run(shell_command(database, REFERENCE_SQL), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def timed(store: Store, full: bool) -> tuple[float, str]:
    """Seconds one derivation takes, and what it did."""
    settle()
    started = time.perf_counter()
    summary = store.derive(SETTINGS, full=full)
    elapsed = time.perf_counter() - started
    return elapsed, (
        f"{summary.roles} roles, {summary.findings} open findings,"
        f" {summary.hosts_judged} hosts judged"
    )


def main() -> int:
    """Generate, derive from scratch, derive with nothing new, add 1%, derive again."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--observations", type=int, default=10_000_000)
    parser.add_argument("--smtp", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = random.Random(7)
    with (
        tempfile.TemporaryDirectory(prefix="rolecall-derive-") as tmp,
        inventory(args.database, Path(tmp)) as database,
    ):
        started = time.perf_counter()
        load(database, args, rng)
        print(
            f"generated {args.assets} assets, {args.observations} observations,"
            f" {args.smtp} mail transactions, {args.flows} flows in {args.database}"
            f" in {time.perf_counter() - started:.1f} s ({load_note()})"
        )
        store = Store.open(database)
        full, what = timed(store, full=True)
        print(f"full derivation:        {full:6.1f} s  (target < {FULL_TARGET:g} s)  {what}")
        seconds, what = timed(store, full=False)
        print(f"nothing new:            {seconds:6.1f} s  {what}")
        store.close()
        add_one_percent(database, args, rng)
        store = Store.open(database)
        incremental, what = timed(store, full=False)
        print(
            f"after 1% new evidence:  {incremental:6.1f} s"
            f"  (target < {INCREMENTAL_TARGET:g} s)  {what}"
        )
        store.close()
        shell = reference(database)
        print(
            f"the evidence aggregated once by {shell_command(database, '')[0]}"
            f" (REFERENCE_SQL): {shell:.1f} s; full derivation {full / shell:.2f}x that,"
            f" after 1% {incremental / shell:.2f}x"
        )
    print(load_note())
    ok = full < FULL_TARGET and incremental < INCREMENTAL_TARGET
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
