"""Benchmark: alert events per second to a local syslog TCP receiver and a local webhook.

Sends EVENTS alert events (ECS JSON) through the syslog output (RFC 5424, octet-counted
over TCP) and through the webhook output (JSON arrays, batch_size per POST), in the
delivery engine's batches, to receivers in a child process (so that they do not share
the sender's interpreter). A run counts from the first event handed to the output to
the last one received. Targets: syslog >= 5,000 events/s, webhook >= 1,000 events/s.

Then the time alerts add to a derivation that raises FINDINGS findings (an SQLite
inventory of that many inside hosts each sending mail straight outside, from a Zeek
smtp.log): recording their events inside the derivation, plus delivering them through
the delivery engine to both receivers. Target: < 1 s.

    python -m bench.alert_delivery [--events 100000] [--batch-size 100] [--findings 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from rolecall.alerts.delivery import BATCH
from rolecall.alerts.event import AlertEvent
from rolecall.alerts.outputs import syslog, webhook
from rolecall.alerts.outputs.common import AlertOutput
from rolecall.inventory import alert_events
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import validate_config
from rolecall.orchestrator.runs.alerts import deliver_configured
from rolecall.orchestrator.settings import derive_settings, reader
from rolecall.probes.records import ReadWarning
from tests.alert_helpers import direct_mail_log
from tests.alert_receivers import HttpReceiver, SyslogReceiver

TARGET_SYSLOG, TARGET_WEBHOOK, TARGET_DERIVE_ADDED = 5_000.0, 1_000.0, 1.0
START = datetime(2026, 9, 1, tzinfo=UTC)
RULES = ("open_relay", "spam_sender", "socks_proxy", "http_proxy")


def make_events(count: int) -> list[AlertEvent]:
    """count events as a busy site's derivations raise them: mixed rules, roles, evidence."""
    return [
        AlertEvent(
            sequence=n + 1,
            action="opened" if n % 3 else "updated",
            at=START + timedelta(seconds=n),
            rule=RULES[n % len(RULES)],
            address=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
            severity=("high", "medium", "low")[n % 3],
            summary=f"host 10.0.{n % 256}.{n % 200} relayed mail for 42 outside domains",
            roles=("smtp-server", "web-server"),
            groups=("dmz",),
            first_seen=START,
            last_seen=START + timedelta(seconds=n),
            evidence=(f"observation:{n * 3}", f"smtp:{n}", f"pcap:/data/day.pcap@{n * 1500}"),
            techniques=("T1071.003",),
        )
        for n in range(count)
    ]


def receive() -> None:
    """Child: run the receivers, print their addresses, answer each stdin line with counts."""
    stream = SyslogReceiver("tcp")
    hook = HttpReceiver()
    print(stream.port, hook.url, flush=True)
    for _ in sys.stdin:
        events = sum(len(json.loads(request.body)) for request in hook.requests)
        print(len(stream.messages), events, len(stream.errors), flush=True)


def counts(child: subprocess.Popen[str]) -> tuple[int, int, int]:
    """The receivers' counts: syslog messages, webhook events, framing errors."""
    stdin, stdout = child.stdin, child.stdout
    assert stdin is not None
    assert stdout is not None
    stdin.write("\n")
    stdin.flush()
    syslog_count, webhook_count, errors = (int(word) for word in stdout.readline().split())
    return syslog_count, webhook_count, errors


def timed(output: AlertOutput, events: Sequence[AlertEvent], received: Callable[[], int]) -> float:
    """Seconds from the first event handed over until the receiver holds them all."""
    started = time.perf_counter()
    for first in range(0, len(events), BATCH):
        delivered = output.deliver(events[first : first + BATCH])
        if delivered.error is not None:
            raise SystemExit(f"delivery failed: {delivered.error}")
    output.close()
    while received() < len(events):
        time.sleep(0.01)
    return time.perf_counter() - started


def line(name: str, count: int, seconds: float, target: float) -> bool:
    """Print one output's figure against its target; whether it meets it."""
    rate = count / seconds
    verdict = "meets" if rate >= target else "MISSES"
    print(
        f"{name:8} {count:,} events in {seconds:6.2f} s = {rate:9,.0f} events/s"
        f"  ({verdict} the target >= {target:,.0f}/s)"
    )
    return rate >= target


def mail_log(folder: Path, hosts: int) -> Path:
    """A Zeek smtp.log of one message from each of `hosts` inside hosts straight outside."""
    clients = [f"10.20.{n // 250}.{n % 250 + 1}" for n in range(hosts)]
    return direct_mail_log(folder, clients, START)


@contextmanager
def recording_time() -> Iterator[list[float]]:
    """Sum, into the yielded list's one item, the seconds spent writing alert events."""
    spent = [0.0]
    original = alert_events.record_events

    def timed_record(*args: Any) -> int:
        started = time.perf_counter()
        try:
            return original(*args)
        finally:
            spent[0] += time.perf_counter() - started

    alert_events.record_events = timed_record  # type: ignore[assignment]
    try:
        yield spent
    finally:
        alert_events.record_events = original


def derive_added(child: subprocess.Popen[str], port: str, url: str, findings: int) -> bool:
    """Print the time alerts add to a derivation raising `findings` findings; under target?"""
    config = validate_config(
        {
            "scope": {"allow": ["10.20.0.0/16"]},
            "alerts": [
                {"type": "syslog", "name": "siem", "host": "127.0.0.1", "port": int(port)},
                {"type": "webhook", "name": "hook", "url": url},
            ],
        },
        "bench",
    )
    syslog_before, webhook_before, _ = counts(child)
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(str(Path(folder) / "inventory.db"))
        with store.writer() as writer:
            for item in reader(config, "zeek")(mail_log(Path(folder), findings)):
                if not isinstance(item, ReadWarning):
                    writer.add(item)
        with recording_time() as recording:
            started = time.perf_counter()
            summary = store.derive(derive_settings(config))
            derived = time.perf_counter() - started
        started = time.perf_counter()
        deliver_configured(store, config, print)
        recorded = len(store_events(store))
        while counts(child)[:2] < (syslog_before + recorded, webhook_before + recorded):
            time.sleep(0.01)
        delivered = time.perf_counter() - started
        store.close()
    added = recording[0] + delivered
    verdict = "meets" if added < TARGET_DERIVE_ADDED else "MISSES"
    print(
        f"derive   {summary.findings:,} findings raised in {derived:.2f} s, of which"
        f" {recording[0]:.3f} s recording {recorded:,} events; delivering them to both"
        f" receivers {delivered:.3f} s; added {added:.2f} s"
        f"  ({verdict} the target < {TARGET_DERIVE_ADDED:.0f} s)"
    )
    return added < TARGET_DERIVE_ADDED and summary.findings >= findings


def store_events(store: Store) -> list[AlertEvent]:
    """Every alert event the inventory holds."""
    with store.read("read the alert events") as connection:
        return alert_events.events_after(connection, 0, 1 << 30)


def measure(
    child: subprocess.Popen[str], events: list[AlertEvent], batch_size: int, findings: int
) -> bool:
    """Time both outputs against the child's receivers and print the figures; whether both pass."""
    stdout: IO[str] | None = child.stdout
    assert stdout is not None
    port, url = stdout.readline().split()
    stream = syslog.open_output(
        syslog.Settings.model_validate(
            {"name": "bench", "type": "syslog", "host": "127.0.0.1", "port": int(port)}
        )
    )
    hook = webhook.open_output(
        webhook.Settings.model_validate(
            {"name": "bench", "type": "webhook", "url": url, "batch_size": batch_size}
        )
    )
    count = len(events)
    print(f"{count:,} events; delivery batches of {BATCH}, webhook POSTs of {batch_size}")
    seconds = timed(stream, events, lambda: counts(child)[0])
    ok = line("syslog", count, seconds, TARGET_SYSLOG)
    seconds = timed(hook, events, lambda: counts(child)[1])
    ok = line("webhook", count, seconds, TARGET_WEBHOOK) and ok
    ok = derive_added(child, port, url, findings) and ok
    errors = counts(child)[2]
    if errors:
        print(f"the syslog receiver saw {errors} framing errors")
    return ok and not errors


def main() -> int:
    """Start the receivers, time both outputs, print the figures; 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100, help="webhook events per POST")
    parser.add_argument("--findings", type=int, default=1_000, help="findings one derive raises")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive()
        return 0
    events = make_events(args.events)
    command = [sys.executable, "-m", "bench.alert_delivery", "--receive"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            ok = measure(child, events, args.batch_size, args.findings)
        finally:
            child.terminate()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
