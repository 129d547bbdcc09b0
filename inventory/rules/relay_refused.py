"""relay-refused: a client had recipients refused (550/554 at RCPT)."""

from __future__ import annotations

import json

from inventory.findings import Raised
from inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "relay-refused"
SEVERITY = "low"


def _permanent(detail: str) -> bool:
    """Whether a refusal's reply (in the observation detail) is a permanent 5xx one."""
    try:
        reply = str(json.loads(detail).get("reply", ""))
    except (ValueError, AttributeError):
        return False
    return reply[:1] == "5"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A capture saw a recipient refused with a permanent reply (a 4xx retry is not)."""
    if not _permanent(row.detail):
        return
    server = json.loads(row.detail).get("server", "the server")
    out.raise_(
        Raised(
            NAME,
            row.address,
            SEVERITY,
            f"{row.address} had recipients refused at RCPT by {server} (e.g. {row.value}).",
            row.first_seen,
            row.last_seen,
            [f"observation:{row.id}"],
        )
    )


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A sensor log's transaction lists refused recipients (captures report them above)."""
    if row.source == "pcap":
        return
    refused = json.loads(row.refused_rcpt)
    if not refused:
        return
    out.raise_(
        Raised(
            NAME,
            row.client,
            SEVERITY,
            f"{row.client} had recipients refused at RCPT by {row.server} (e.g. {refused[0]}).",
            row.ts,
            row.ts,
            [f"smtp:{row.id}"],
        )
    )


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"smtp-rcpt-refused"}),
    observation=from_observation,
    smtp=from_smtp,
)
