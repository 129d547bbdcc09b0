"""Who is asking: a user (or token) and what they may do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from starlette.requests import Request

from rolecall.console.errors import RequestError

Level = Literal["read", "triage"]
LEVELS: Final = ("read", "triage")
"""read: see everything; triage: also acknowledge and un-acknowledge findings."""


@dataclass(frozen=True)
class User:
    """A signed-in user, a token's holder, or "local" (loopback with no users configured)."""

    name: str
    level: Level


def user_of(request: Request) -> User:
    """The user the access middleware admitted for this request."""
    user: User = request.state.user
    return user


def require_triage(request: Request) -> User:
    """The user, if they may change findings; else one sentence (HTTP 403)."""
    user = user_of(request)
    if user.level != "triage":
        raise RequestError(f"{user.name} may read but not triage (acknowledge)", status=403)
    return user
