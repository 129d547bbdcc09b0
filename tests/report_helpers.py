"""An inventory with real evidence for report tests: conformance captures plus written mail."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from rolecall.inventory.settings import DeriveSettings, GroupSpec
from rolecall.inventory.store import Store
from rolecall.orchestrator.cli.app import main
from rolecall.probes.records import Flow, HostName, Service, SmtpTransaction
from tests.data_paths import CONFORMANCE

TRACES = sorted(CONFORMANCE.glob("*/trace.pcap"))
HOSTILE = "<script>alert('x')</script>"
UNTIL = datetime(2026, 3, 2, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=7)
GROUPS = (
    GroupSpec("servers", networks=("10.10.1.0/24",)),
    GroupSpec("desks", networks=("192.168.0.0/16",)),
)


def ingest_conformance(db: Path | str) -> list[int]:
    """Ingest every shared conformance capture with `rolecall ingest pcap`; the exit codes."""
    return [main(["--db", str(db), "-q", "ingest", "pcap", str(trace)]) for trace in TRACES]


def _day(offset: int) -> datetime:
    """Noon UTC `offset` days before the report's end."""
    return datetime.combine((UNTIL - timedelta(days=offset)).date(), time(12), UTC)


def recent_mail(days: int = 90) -> list[SmtpTransaction | Flow | HostName | Service]:
    """Mail over the last `days` days: one client more every ten days, a bulk mailer at the end."""
    records: list[SmtpTransaction | Flow | HostName | Service] = []
    for offset in range(days):
        clients = 1 + (days - offset) // 10
        for index in range(clients):
            client = f"10.10.1.{100 + index}"
            ts = _day(offset) + timedelta(minutes=index)
            records.append(
                SmtpTransaction(
                    ts,
                    client,
                    40000 + index,
                    "203.0.113.25",
                    25,
                    "pcap",
                    mail_from=f"sender{index}@example.org",
                    rcpt_to=(f"user{offset % 3}@example.net",),
                    subject=f"report day {offset % 2}",
                    user_agent="The Bat! (v9.1)" if index == 0 else "Thunderbird 115",
                )
            )
            records.append(
                Flow(client, "203.0.113.25", 25, "tcp", ts.date(), "pcap", ts, ts, 2 + offset % 4)
            )
    records.append(HostName("10.10.1.100", HOSTILE + ".example", "pcap", _day(0)))
    records.append(
        Service("10.10.1.100", 25, "tcp", "probe", _day(0), "smtp", banner="220 " + HOSTILE)
    )
    records.append(
        SmtpTransaction(
            _day(1),
            "8.8.8.8",
            50000,
            "10.10.1.100",
            25,
            "pcap",
            subject=HOSTILE,
            rcpt_to=("victim@example.net",),
            user_agent=HOSTILE,
        )
    )
    return records


def build_inventory(db: Path | str, days: int = 90) -> Store:
    """Conformance captures and `days` days of mail, derived (roles, groups, findings, history)."""
    assert ingest_conformance(db) == [0] * len(TRACES)
    store = Store.open(str(db))
    with store.writer() as writer:
        writer.add_all(recent_mail(days))
    store.derive(DeriveSettings(groups=GROUPS, inside=("10.0.0.0/8", "192.168.0.0/16")))
    return store
