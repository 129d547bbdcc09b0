"""mass-mailer-software: mail sent with a client known for bulk mailing."""

from __future__ import annotations

from rolecall.inventory.matching.mailer_signatures import matching_signature
from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "mass-mailer-software"
SEVERITY = "high"


def from_smtp(ctx: RuleContext, row: Row, out: Collector) -> None:
    """A sent message's X-Mailer / User-Agent matches a bulk-mail signature.

    Only SMTP transactions count: a header read in POP3 or IMAP is mail being read. A
    proxy's own copy of a message it relays (``relayed_for``) is the client's message,
    whose tunnelled copy raises this on the client: the proxy runs no mailer.
    """
    if row.relayed_for:
        return
    signature = matching_signature(row.user_agent, ctx.settings.mass_mailers)
    if signature is None:
        return
    out.raise_on_smtp(
        NAME,
        SEVERITY,
        row,
        f"{row.client} sent mail to {row.server} with {row.user_agent!r},"
        f" a bulk-mail client ({signature}).",
    )


RULE = Rule(NAME, SEVERITY, smtp=from_smtp)
