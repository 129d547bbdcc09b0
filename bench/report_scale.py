"""HTML and CSV reports of a large inventory: wall time, peak memory, HTML size, browser open.

Generates an inventory of 100,000 assets (roles, services) and 50,000 findings with
evidence, in SQLite or (`--database postgresql`) in a throwaway local PostgreSQL
cluster, then runs `rolecall report` as a child process for each format, and opens
the HTML in headless Chromium. Targets, either backend: each report < 10 s and
< 500 MB peak RSS; the HTML opens in the browser in < 2 s (time over an empty page's).

    python -m bench.report_scale [--database sqlite|postgresql] [--assets 100000]
        [--findings 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.inventory_backends import (
    add_database_option,
    analyzed,
    inventory,
    load_note,
    settle,
)
from rolecall.inventory.store import Store
from rolecall.inventory.tables import (
    ASSET_TABLE,
    FINDING_TABLE,
    ROLE_TABLE,
    SERVICE_TABLE,
    SMTP_TABLE,
)

UNTIL = datetime(2026, 3, 2, tzinfo=UTC)
RULES = (
    ("mass-mailer-software", "high"),
    ("unexpected-mail-client", "medium"),
    ("new-smtp-client", "info"),
    ("relay-refused", "low"),
    ("open-socks-proxy", "high"),
)
ROLES = ("workstation", "web-server", "smtp-client", "smtp-server", "socks-proxy")
TARGET_SECONDS, TARGET_MB, TARGET_OPEN = 10.0, 500.0, 2.0


def address(index: int) -> str:
    """The index-th address of 10.0.0.0/8."""
    return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"


def generate(db: str | Path, assets: int, findings: int) -> None:
    """Fill an inventory (path or URL) with generated assets, roles, services, mail, findings."""
    store = Store.open(str(db))
    seen = UNTIL - timedelta(days=3)
    with store.transaction("fill the inventory") as connection:
        connection.execute(
            ASSET_TABLE.insert(),
            [{"address": address(i), "first_seen": seen, "last_seen": seen} for i in range(assets)],
        )
        connection.execute(
            ROLE_TABLE.insert(),
            [
                {
                    "address": address(i),
                    "role": ROLES[i % len(ROLES)],
                    "source": "probe",
                    "evidence": "[]",
                    "first_seen": seen,
                    "last_seen": seen,
                }
                for i in range(assets)
            ],
        )
        connection.execute(
            SERVICE_TABLE.insert(),
            [
                {
                    "address": address(i),
                    "port": 25 if i % 2 else 80,
                    "transport": "tcp",
                    "protocol": "smtp" if i % 2 else "http",
                    "product": "Postfix" if i % 2 else "nginx",
                    "version": "",
                    "auth": "",
                    "banner": "220 mail.example ESMTP" if i % 2 else "",
                    "source": "probe",
                    "first_seen": seen,
                    "last_seen": seen,
                }
                for i in range(0, assets, 3)
            ],
        )
        connection.execute(
            SMTP_TABLE.insert(),
            [
                {
                    "ts": seen + timedelta(seconds=i),
                    "client": address(i * 7 % assets),
                    "client_port": 40000 + i % 20000,
                    "server": "203.0.113.25",
                    "server_port": 25,
                    "trans_depth": 1,
                    "helo": "desk",
                    "mail_from": f"s{i}@example.org",
                    "rcpt_to": json.dumps([f"r{i % 300}@example.net"]),
                    "refused_rcpt": "[]",
                    "subject": f"offer {i % 50}",
                    "from": "",
                    "to": "[]",
                    "date": "",
                    "msg_id": "",
                    "user_agent": "The Bat! (v9.1)" if i % 4 == 0 else "Outlook 16",
                    "last_reply": "250 ok",
                    "tls": False,
                    "via_proxy": "",
                    "source": "pcap",
                }
                for i in range(findings)
            ],
        )
        connection.execute(
            FINDING_TABLE.insert(),
            [
                {
                    "rule": RULES[i % len(RULES)][0],
                    "address": address(i * 2 % assets),
                    "severity": RULES[i % len(RULES)][1],
                    "summary": f"generated finding {i}",
                    "evidence": json.dumps([f"smtp:{i + 1}", f"smtp:{(i + 7) % findings + 1}"]),
                    "first_seen": seen,
                    "last_seen": seen,
                    "status": "open",
                    "note": "",
                    "acknowledged": None,
                }
                for i in range(findings)
            ],
        )
    store.close()


def run_report(db: str, fmt: str, out: Path) -> tuple[float, float]:
    """Run `rolecall report` in a child; return (wall seconds, peak RSS MB of that child)."""
    code = (
        "import resource, sys; from rolecall.orchestrator.cli.app import main; "
        f"rc = main(['--db', {str(db)!r}, '-q', 'report', '--since', '2026-02-23', "
        f"'--until', '2026-03-02', '--format', {fmt!r}, '-o', {str(out)!r}]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
        "sys.exit(rc)"
    )
    settle()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, int(done.stderr.strip().splitlines()[-1]) / 1024


def browser_open(page: Path, profile: Path) -> float:
    """Seconds headless Chromium takes to load and render a page and dump its DOM."""
    chromium = shutil.which("chromium") or "chromium"
    start = time.perf_counter()
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - start


def main() -> int:
    """Generate, report, measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--findings", type=int, default=50_000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="rolecall-report-bench-") as temp,
        inventory(args.database, Path(temp)) as db,
    ):
        work = Path(temp)
        start = time.perf_counter()
        generate(db, args.assets, args.findings)
        analyzed(db)
        print(
            f"generated {args.assets} assets, {args.findings} findings in {args.database}"
            f" in {time.perf_counter() - start:.1f} s ({load_note()})"
        )
        ok = True
        for fmt in ("html", "csv"):
            out = work / f"report.{fmt}"
            wall, peak = run_report(db, fmt, out)
            size = out.stat().st_size
            ok = ok and wall < TARGET_SECONDS and peak < TARGET_MB
            print(
                f"{fmt}: {wall:.2f} s wall, {peak:.0f} MB peak RSS, {size / 1e6:.2f} MB"
                f" (target < {TARGET_SECONDS:g} s, < {TARGET_MB:g} MB)"
            )
        empty = work / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>", encoding="utf-8")
        baseline = min(browser_open(empty, work / "profile") for _ in range(2))
        loaded = min(browser_open(work / "report.html", work / "profile") for _ in range(2))
        opened = max(loaded - baseline, 0.0)
        ok = ok and opened < TARGET_OPEN
        print(
            f"browser: report opens in {opened:.2f} s over an empty page"
            f" ({loaded:.2f} s vs {baseline:.2f} s; target < {TARGET_OPEN:g} s)"
        )
        print(
            f"children peak RSS overall: "
            f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"
        )
        print(load_note())
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
