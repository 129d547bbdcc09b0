"""open-relay: an SMTP server accepted a foreign recipient from anyone, without AUTH."""

from __future__ import annotations

from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "open-relay"
SEVERITY = "high"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """Only the probe's "open-relay" verdict counts: a refused or inconclusive test does not."""
    if row.value != "open-relay":
        return
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"SMTP server {row.address} port {row.port} accepted a recipient in a foreign domain"
        " from an unauthenticated outside sender (rolecall stopped at RCPT).",
    )


RULE = Rule(
    NAME, SEVERITY, observation_kinds=frozenset({"smtp-relay"}), observation=from_observation
)
