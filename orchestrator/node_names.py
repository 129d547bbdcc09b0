"""Site and sensor names: the one spelling queues, schedules and lock files all take."""

from __future__ import annotations

import re
from typing import Final

from rolecall.orchestrator.errors import UsageError

_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"


def node_name(name: str, option: str) -> str:
    """The name given to option (--site or --sensor) if it is one, else UsageError saying so."""
    if not re.fullmatch(_PATTERN, name):
        kind = option.removeprefix("--")
        raise UsageError(
            f"{option} {name!r}: a {kind} name is letters, digits, _ . and - only (at most 64)"
        )
    return name
