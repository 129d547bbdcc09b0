"""anonymous-ftp: an FTP server lets anyone log in as anonymous."""

from __future__ import annotations

from inventory.findings import Raised
from inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "anonymous-ftp"
SEVERITY = "medium"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """The probe's USER anonymous was accepted (a refusal raises nothing)."""
    if row.value != "allowed":
        return
    out.raise_(
        Raised(
            NAME,
            row.address,
            SEVERITY,
            f"FTP server {row.address} port {row.port} accepts anonymous logins.",
            row.first_seen,
            row.last_seen,
            [f"observation:{row.id}"],
        )
    )


RULE = Rule(
    NAME, SEVERITY, observation_kinds=frozenset({"ftp-anonymous"}), observation=from_observation
)
