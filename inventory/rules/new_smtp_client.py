"""new-smtp-client: a host seen sending SMTP for the first time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from rolecall.inventory.findings import Raised
from rolecall.inventory.rules.base import Collector, Rule, RuleContext
from rolecall.inventory.rules.host_roles import (
    HeldRole,
    first_smtp_client,
    relayed_clients,
    relaying_note,
)

NAME = "new-smtp-client"
SEVERITY = "info"


def judge(ctx: RuleContext, held: Mapping[str, Mapping[str, HeldRole]], out: Collector) -> None:
    """Raise on hosts whose first SMTP came after the learning period of the store's mail history.

    Until the store has watched mail for new_client_learning_days, every sender
    is part of the known population, not new.
    """
    first_ever = first_smtp_client(ctx.connection)
    if first_ever is None:
        return
    learned = first_ever + timedelta(days=ctx.settings.new_client_learning_days)
    new: dict[str, HeldRole] = {}
    for address, roles in held.items():
        client = roles.get("smtp-client")
        if client is not None and client.first_seen > learned:
            new[address] = client
    relaying = relayed_clients(ctx.connection, sorted(new))
    for address, client in new.items():
        out.raise_(
            Raised(
                NAME,
                address,
                SEVERITY,
                f"{address} sent SMTP for the first time on {client.first_seen:%Y-%m-%d %H:%M}"
                f" UTC{relaying_note(relaying.get(address, []))}.",
                client.first_seen,
                client.first_seen,
                client.evidence[:5],
            )
        )


RULE = Rule(NAME, SEVERITY, hosts=judge)
