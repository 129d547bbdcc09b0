"""direct-external-smtp: an inside host talks SMTP to an outside server not an approved relay."""

from __future__ import annotations

from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "direct-external-smtp"
SEVERITY = "medium"
SMTP_PORT = 25


def _outside_unapproved(ctx: RuleContext, client: str, server: str) -> bool:
    """Inside client, outside server, and the server is no approved relay."""
    return ctx.is_inside(client) and not ctx.is_inside(server) and not ctx.is_approved_relay(server)


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A mail transaction from inside straight to an outside server."""
    if not _outside_unapproved(ctx, row.client, row.server):
        return
    out.raise_on_smtp(
        NAME,
        SEVERITY,
        row,
        f"{row.client} sent SMTP straight to the outside server {row.server}"
        f" port {row.server_port}, which is not an approved relay.",
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
