"""Query parameters read and checked once: bad ones are one sentence (HTTP 400)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from starlette.requests import Request

from rolecall.console.errors import RequestError

MAX_TEXT = 200
"""The longest text a filter takes (a search, an address)."""


def text(request: Request, name: str, default: str = "") -> str:
    """A text parameter, stripped; longer than MAX_TEXT is refused."""
    value = request.query_params.get(name, default).strip()
    if len(value) > MAX_TEXT:
        raise RequestError(f"{name}: longer than {MAX_TEXT} characters")
    return value


def choice(request: Request, name: str, allowed: Collection[str], default: str = "") -> str:
    """A parameter that must be one of ``allowed`` (or empty, for no filter)."""
    value = text(request, name, default)
    if value and value not in allowed:
        if not allowed:
            raise RequestError(f"{name}: {value!r} is not known: there are none to choose from")
        raise RequestError(f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def number(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole number parameter from low to high."""
    raw = text(request, name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise RequestError(f"{name}: {raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def day(request: Request, name: str) -> datetime | None:
    """A date (YYYY-MM-DD) or ISO time parameter as UTC, or None when not given."""
    raw = text(request, name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"{name}: {raw!r} is not a date (YYYY-MM-DD)") from None
    if not 1970 <= moment.year <= 2999:
        raise RequestError(f"{name}: {raw!r} is outside 1970-2999")
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
