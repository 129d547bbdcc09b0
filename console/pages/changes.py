"""The changes page and its JSON twin: what changed between two dates, as `rolecall changes`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from starlette.requests import Request
from starlette.routing import BaseRoute

from rolecall.console import parameters
from rolecall.console.context import context_of
from rolecall.console.errors import RequestError
from rolecall.console.responses import twin_routes
from rolecall.inventory.changes import changes_between
from rolecall.inventory.store import utcnow
from rolecall.reports.period_tables import CHANGE_KINDS, change_rows

DEFAULT_PERIOD: Final = timedelta(days=7)


def changes_data(request: Request) -> Mapping[str, Any]:
    """Every change of [since, until) as `changes --format json` rows, with counts by kind.

    Parameters: since and until (dates or ISO times, UTC; default the last 7 days),
    kind (one kind of change).
    """
    until = parameters.day(request, "until") or utcnow()
    since = parameters.day(request, "since") or until - DEFAULT_PERIOD
    kind = parameters.choice(request, "kind", CHANGE_KINDS)
    if since >= until:
        raise RequestError(
            f"since {since.isoformat()} is not before until {until.isoformat()}:"
            " the period is empty"
        )
    with context_of(request).read("read what changed") as connection:
        rows = list(change_rows(changes_between(connection, since, until)))
    counts = Counter(row["change"] for row in rows)
    return {
        "since": since,
        "until": until,
        "kind": kind or None,
        "kinds": CHANGE_KINDS,
        "counts": {name: counts[name] for name in CHANGE_KINDS},
        "changes": [row for row in rows if not kind or row["change"] == kind],
    }


ROUTES: list[BaseRoute] = list(twin_routes("/changes", changes_data, "changes.html.j2", "changes"))
