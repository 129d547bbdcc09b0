"""plaintext-auth: an SMTP server offers AUTH before TLS."""

from __future__ import annotations

from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "plaintext-auth"
SEVERITY = "medium"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """The probe saw AUTH mechanisms advertised on a connection not yet encrypted."""
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"SMTP server {row.address} port {row.port} offers AUTH {row.value} before TLS,"
        " so passwords can cross the network in clear.",
    )


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"smtp-plaintext-auth"}),
    observation=from_observation,
)
