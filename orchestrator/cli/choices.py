"""Names a command line option must be one of: rule ids and group names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rolecall.orchestrator.errors import UsageError

if TYPE_CHECKING:
    from rolecall.orchestrator.config import Config


def check_rule(rule: str | None) -> None:
    """Refuse a rule id that no finding rule has, naming the ones there are."""
    if rule is None:
        return
    # The rules load the database layer: only when a rule id is given.
    from rolecall.inventory.rules import all_rules

    names = sorted(known.name for known in all_rules())
    if rule not in names:
        raise UsageError(f"--rule: {rule!r} is not a rule id; the rules are {', '.join(names)}")


def check_group(group: str | None, config: Config) -> None:
    """Refuse a group name the config does not declare, naming the ones it does."""
    if group is None:
        return
    names = [entry.name for entry in config.groups]
    if group not in names:
        declared = ", ".join(names) if names else "none ([[groups]] in the config declares them)"
        raise UsageError(f"--group: {group!r} is not a group; the groups are {declared}")
