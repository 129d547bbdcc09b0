"""A full derivation judges hosts on the roles it found, as the role table holds them.

Reading everything, derivation hands the host rules the roles it has just found rather
than reading them back; a role seen by several sources is merged over them in the same
order as the table is read (sources in code point order), so a finding's evidence is
the same whichever way its host's roles were read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rolecall.inventory.store import Store
from rolecall.probes.records import SmtpTransaction
from tests.inventory_sql import query

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FIRST = "10.21.0.4"  # the store's first mail sender: the start of its mail history
NEWCOMER = "10.21.0.5"  # sends mail weeks later (new-smtp-client), seen by two sensors
RELAY = "10.21.0.25"


def _mail(client: str, source: str, when: datetime, port: int) -> SmtpTransaction:
    """One mail transaction from client through the relay, as a sensor saw it."""
    return SmtpTransaction(when, client, port, RELAY, 25, source, mail_from="a@corp.test")


def _findings(database: str) -> list[tuple[Any, ...]]:
    """Every finding's content, evidence included, in one order."""
    return sorted(
        query(
            database,
            "SELECT rule, address, summary, evidence, first_seen, last_seen, status FROM finding",
        ),
        key=repr,
    )


def test_full_derivation_judges_hosts_as_the_role_table_has_them(database: str) -> None:
    store = Store.open(database)
    later = T0 + timedelta(days=30)
    with store.writer() as writer:
        writer.add(_mail(FIRST, "pcap", T0, 40000))
    store.derive()  # the first derivation reads everything; the next reads what is new
    with store.writer() as writer:
        # The later sensor's rows first (lower ids): read in id order, its evidence comes
        # first, but the table merges the sources in code point order ("pcap", "zeek").
        for n in range(3):
            writer.add(_mail(NEWCOMER, "zeek", later + timedelta(minutes=n), 41000 + n))
        for n in range(3):
            writer.add(_mail(NEWCOMER, "pcap", later + timedelta(minutes=10 + n), 42000 + n))
    store.derive()
    incremental = _findings(database)
    store.derive(full=True)
    store.close()
    full = _findings(database)
    assert full == incremental
    raised = [row for row in full if row[0] == "new-smtp-client"]
    assert [row[1] for row in raised] == [NEWCOMER]
    # Both sensors' rows (ids 2-4 from zeek, 5-7 from pcap), "pcap"'s first, five at most.
    assert json.loads(str(raised[0][3])) == ["smtp:5", "smtp:6", "smtp:7", "smtp:2", "smtp:3"]
