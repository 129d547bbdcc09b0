"""relay-refused: a client had recipients refused (550/554 at RCPT)."""

from __future__ import annotations

import json

from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "relay-refused"
SEVERITY = "low"


REFUSALS = frozenset({"550", "554"})  # contract: refused at RCPT with 550/554


def _refused(detail: str) -> bool:
    """Whether a refusal's reply (in the observation detail) is a 550 or 554."""
    try:
        reply = str(json.loads(detail).get("reply", ""))
    except (ValueError, AttributeError):
        return False
    return reply[:3] in REFUSALS


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A capture saw a recipient refused with 550/554 (a 4xx retry or a syntax error is not)."""
    if not _refused(row.detail):
        return
    server = json.loads(row.detail).get("server", "the server")
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"{row.address} had recipients refused at RCPT by {server} (e.g. {row.value}).",
    )


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"smtp-rcpt-refused"}),
    observation=from_observation,
)
