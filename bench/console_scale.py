"""The console (`rolecall serve`) on a large inventory: page times and /api/findings throughput.

Generates the inventory of bench/report_scale.py (100,000 assets, 50,000 findings) plus
one busy host (10,000 mails sent, 90 days of flows to 100 servers), serves it with
`rolecall serve` as a child process on loopback, and measures each page's response time
at the client (server time plus well under a millisecond of loopback) over N requests:
findings pages < 300 ms and host pages < 100 ms at the 95th percentile. Then 8 clients
at once ask /api/findings for SECONDS: requests per second. Each figure is set against
what a user would run instead: `rolecall findings list --format json` with the same
filter, and `export services` + `export smtp` (then picking the host) for a host.

    python -m bench.console_scale [--assets 100000] [--findings 50000] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from bench.report_scale import UNTIL, address, generate
from bench.rolecall_command import rolecall_command
from rolecall.inventory.store import Store
from rolecall.inventory.tables import FINDING_TABLE, FLOW_TABLE, SMTP_TABLE

PAGE_TARGET_MS, HOST_TARGET_MS = 300.0, 100.0
BUSY = address(4242)
"""The host that sent the most mail and has the most flows."""
CLIENTS = 8
RULE = "mass-mailer-software"
RULE_PAGE = f"findings rule={RULE}"
BUSY_PAGE = f"host {BUSY} (10k mails, 9k flows)"


def add_busy_host(db: Path, mails: int = 10_000, days: int = 90, servers: int = 100) -> None:
    """Give one host many mails, flows every day to many servers, and a finding of each rule."""
    store = Store.open(str(db))
    with store.transaction("add the busy host") as connection:
        connection.execute(
            SMTP_TABLE.insert(),
            [
                {
                    "ts": UNTIL - timedelta(seconds=30 * i),
                    "client": BUSY,
                    "client_port": 30000 + i % 30000,
                    "server": f"198.51.100.{i % 200}",
                    "server_port": 25,
                    "trans_depth": 1,
                    "helo": "busy",
                    "mail_from": f"news{i % 40}@example.org",
                    "rcpt_to": json.dumps([f"u{i % 2000}@example.com"]),
                    "refused_rcpt": "[]",
                    "subject": f"cheap offer {i % 25}",
                    "from": "",
                    "to": "[]",
                    "date": "",
                    "msg_id": "",
                    "user_agent": "The Bat! (v9.1)",
                    "last_reply": "250 ok",
                    "tls": False,
                    "via_proxy": "",
                    "source": "pcap",
                }
                for i in range(mails)
            ],
        )
        connection.execute(
            FLOW_TABLE.insert(),
            [
                {
                    "client": BUSY,
                    "server": f"198.51.100.{server}",
                    "server_port": 25,
                    "transport": "tcp",
                    "day": (UNTIL - timedelta(days=day)).date(),
                    "source": "pcap",
                    "connections": 1 + server % 7,
                    "packets": 20,
                    "bytes": 4000,
                    "first_seen": UNTIL - timedelta(days=day),
                    "last_seen": UNTIL - timedelta(days=day),
                    "answered": True,
                }
                for day in range(days)
                for server in range(servers)
            ],
        )
        # The generated findings fall on even hosts; BUSY is one (4242 = 2 * 2121).
        busy_findings = connection.execute(
            FINDING_TABLE.select().where(FINDING_TABLE.c.address == BUSY)
        ).all()
        assert busy_findings, f"{BUSY} has no finding in the generated inventory"
    store.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db: Path, port: int) -> subprocess.Popen[bytes]:
    """`rolecall serve` on 127.0.0.1:port as a child, once it answers."""
    child = subprocess.Popen(
        [*rolecall_command(), "--db", str(db), "-q", "serve", "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"rolecall serve exited with status {child.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/console.css", timeout=1)
            return child
        except httpx.TransportError:
            time.sleep(0.2)
    child.terminate()
    raise SystemExit("rolecall serve did not answer within 60 s")


def p95_ms(client: httpx.Client, path: str, requests: int) -> tuple[float, float]:
    """(median, 95th percentile) milliseconds of `requests` GETs of a path, after one warm-up."""
    client.get(path).raise_for_status()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def throughput(base: str, path: str, seconds: float) -> float:
    """Requests per second that CLIENTS clients at once get answered for one path."""
    counts = [0] * CLIENTS
    failures: list[str] = []
    stop = time.monotonic() + seconds

    def ask(index: int) -> None:
        """One client asking again and again until time is up."""
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.monotonic() < stop:
                answer = client.get(path)
                if answer.status_code != 200:
                    failures.append(f"{path}: HTTP {answer.status_code}")
                    return
                counts[index] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(failures[0])
    return sum(counts) / (time.perf_counter() - start)


def cli_ms(db: Path, *args: str, rounds: int = 3) -> float:
    """Median milliseconds of a rolecall command on the inventory, output discarded."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            [*rolecall_command(), "--db", str(db), "-q", *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def compare_with_cli(db: Path, page_ms: float, host_ms: float, rate: float) -> None:
    """Print what the CLI a user would otherwise run takes for the same answers."""
    listed = cli_ms(db, "findings", "list", "--rule", RULE, "--status", "open", "--format", "json")
    exported = cli_ms(db, "export", "services", "--format", "json")
    exported += cli_ms(db, "export", "smtp", "--format", "json")
    print(
        f"vs `findings list --rule {RULE} --format json`: {listed:.0f} ms,"
        f" {listed / page_ms:.1f}x the page's p95; {rate * listed / 1000:.0f} API answers"
        " in the time of one CLI run"
    )
    print(
        f"vs `export services` + `export smtp` (--format json) to look a host up:"
        f" {exported:.0f} ms, {exported / host_ms:.1f}x the host page's p95"
    )


def main() -> int:
    """Generate, serve, measure and print the figures with their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--findings", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=40, help="GETs per page measured")
    parser.add_argument("--seconds", type=float, default=10.0, help="of concurrent /api/findings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rolecall-console-bench-") as temp:
        db = Path(temp) / "inventory.db"
        start = time.perf_counter()
        generate(db, args.assets, args.findings)
        add_busy_host(db)
        print(
            f"generated {args.assets} assets, {args.findings} findings and busy host {BUSY}"
            f" in {time.perf_counter() - start:.1f} s"
        )
        last_page = -(-args.findings // 5 // 50)  # open findings of one rule, 50 a page
        pages = {
            "findings (open, newest first)": ("/findings", PAGE_TARGET_MS),
            RULE_PAGE: (f"/findings?rule={RULE}", PAGE_TARGET_MS),
            "findings severity=high sort=address": (
                "/findings?severity=high&sort=address",
                PAGE_TARGET_MS,
            ),
            "findings q=text": ("/findings?q=finding%204242", PAGE_TARGET_MS),
            f"findings rule page {last_page}": (
                f"/findings?rule={RULE}&page={last_page}",
                PAGE_TARGET_MS,
            ),
            BUSY_PAGE: (f"/hosts/{BUSY}", HOST_TARGET_MS),
            f"host {address(12345)} (one service)": (f"/hosts/{address(12345)}", HOST_TARGET_MS),
        }
        ok = True
        port = free_port()
        server = serve(db, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                measured = {}
                for label, (path, target) in pages.items():
                    median, p95 = p95_ms(client, path, args.requests)
                    measured[label] = p95
                    ok = ok and p95 < target
                    verdict = "meets" if p95 < target else "MISSES"
                    print(
                        f"{label}: p95 {p95:.1f} ms, median {median:.1f} ms"
                        f" ({verdict} target < {target:g} ms)"
                    )
            rate = throughput(base, f"/api/findings?rule={RULE}", args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"/api/findings?rule={RULE}, {CLIENTS} clients at once: {rate:.0f} requests/s")
        compare_with_cli(
            db,
            measured[f"findings rule={RULE}"],
            measured[f"host {BUSY} (10k mails, 9k flows)"],
            rate,
        )
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
