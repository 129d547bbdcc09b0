"""blocklisted-peer: traffic with an address on a configured blocklist."""

from __future__ import annotations

from datetime import datetime

from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "blocklisted-peer"
SEVERITY = "high"


def _pair(
    ctx: RuleContext,
    one: str,
    other: str,
    what: str,
    span: tuple[datetime, datetime],
    proof: str,
    out: Collector,
) -> None:
    """Raise on whichever side of a pair talked with a blocklisted peer."""
    for host, peer in ((one, other), (other, one)):
        if peer and ctx.is_blocklisted(peer) and not ctx.is_blocklisted(host):
            out.raise_(
                Raised(
                    NAME,
                    host,
                    SEVERITY,
                    f"{host} exchanged {what} with {peer}, which is on a configured blocklist.",
                    span[0],
                    span[1],
                    [proof],
                )
            )


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """Mail between a host and a blocklisted address."""
    _pair(ctx, row.client, row.server, "SMTP", (row.ts, row.ts), f"smtp:{row.id}", out)


def from_socks(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A SOCKS client or destination that is blocklisted."""
    span = (row.ts, row.ts)
    _pair(ctx, row.client, row.proxy, "SOCKS traffic", span, f"socks:{row.id}", out)
    _pair(ctx, row.proxy, row.request_host, "proxied traffic", span, f"socks:{row.id}", out)


def from_flow(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A flow with a blocklisted address that was answered (traffic really went both ways).

    A blocklisted scanner's unanswered SYNs to every inside host are not a relation.
    """
    if not row.answered:
        return
    what = f"{row.transport}/{row.server_port} traffic"
    span = (row.first_seen, row.last_seen)
    _pair(ctx, row.client, row.server, what, span, f"flow:{row.id}", out)


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A firewall-denied mail attempt toward a blocklisted address."""
    span = (row.first_seen, row.last_seen)
    _pair(ctx, row.address, row.value, "denied SMTP attempts", span, f"observation:{row.id}", out)


RULE = Rule(
    NAME,
    SEVERITY,
    observation_kinds=frozenset({"fw-smtp-deny"}),
    observation=from_observation,
    smtp=from_smtp,
    socks=from_socks,
    flow=from_flow,
    applies=lambda ctx: not ctx.blocklist.empty,
)
