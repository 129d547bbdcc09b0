"""anonymous-ftp: an FTP server lets anyone log in as anonymous."""

from __future__ import annotations

from rolecall.inventory.rules.base import Collector, Row, Rule, RuleContext

NAME = "anonymous-ftp"
SEVERITY = "medium"


def from_observation(ctx: RuleContext, row: Row, out: Collector) -> None:
    """The probe's USER anonymous was accepted (a refusal raises nothing)."""
    if row.value != "allowed":
        return
    out.raise_on_observation(
        NAME,
        SEVERITY,
        row,
        f"FTP server {row.address} port {row.port} accepts anonymous logins.",
    )


RULE = Rule(
    NAME, SEVERITY, observation_kinds=frozenset({"ftp-anonymous"}), observation=from_observation
)
