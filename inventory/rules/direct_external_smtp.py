"""direct-external-smtp: an inside host talks SMTP to an outside server not an approved relay.

An approved relay is exempt: delivering mail outside is its job. So is a client's mail
read inside a proxy tunnel (``via_proxy``): it did not go straight, and mail-via-proxy
names it; the proxy's own connection out is the one that went straight, and its finding
says whose mail it relayed.
"""

from __future__ import annotations

from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "direct-external-smtp"
SEVERITY = "medium"
SMTP_PORT = 25


def _outside_unapproved(ctx: RuleContext, client: str, server: str) -> bool:
    """Inside client (not itself an approved relay), outside server that is no approved relay."""
    return (
        ctx.is_inside(client)
        and not ctx.is_approved_relay(client)
        and not ctx.is_inside(server)
        and not ctx.is_approved_relay(server)
    )


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A mail transaction from inside straight to an outside server."""
    if row.via_proxy or not _outside_unapproved(ctx, row.client, row.server):
        return
    relayed = f" (it relays mail for {row.relayed_for})" if row.relayed_for else ""
    out.raise_on_smtp(
        NAME,
        SEVERITY,
        row,
        f"{row.client} sent SMTP straight to the outside server {row.server}"
        f" port {row.server_port}, which is not an approved relay{relayed}.",
    )


def from_flow(ctx: RuleContext, row: Row, out: Collector) -> None:
    """An answered TCP connection from inside to an outside port 25."""
    if row.transport != "tcp" or row.server_port != SMTP_PORT or not row.answered:
        return
    if not _outside_unapproved(ctx, row.client, row.server):
        return
    out.raise_(
        Raised(
            NAME,
            row.client,
            SEVERITY,
            f"{row.client} connected to the outside SMTP port of {row.server},"
            " which is not an approved relay.",
            row.first_seen,
            row.last_seen,
            [f"flow:{row.id}"],
        )
    )


RULE = Rule(
    NAME,
    SEVERITY,
    smtp=from_smtp,
    flow=from_flow,
    flow_ports=frozenset({SMTP_PORT}),
    applies=lambda ctx: not ctx.inside.empty,
)
