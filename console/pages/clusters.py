"""The mail clusters page and its JSON twin, as `rolecall mail cluster FIELD --on FIELD --where`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.routing import BaseRoute

from rolecall.console import parameters
from rolecall.console.context import context_of
from rolecall.console.errors import RequestError
from rolecall.console.responses import twin_routes
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.settings import geo_lookup
from rolecall.reports.clusters.fields import FIELD_NAMES
from rolecall.reports.clusters.view import (
    FIELDS,
    ClusterResult,
    check_field,
    cluster_mail,
    cluster_rows,
)
from rolecall.reports.clusters.where import parse_where
from rolecall.reports.errors import ReportInputError

MAX_CLUSTERS: Final = 10_000


def clusters_data(request: Request) -> Mapping[str, Any]:
    """The clusters of field on another field, as `mail cluster --format json` rows.

    Parameters: field (default subject), on (default rcpt), where (the --where
    expression language), limit (the largest this many), since and until (UTC).
    """
    context = context_of(request)
    field_name = parameters.text(request, "field", "subject")
    on = parameters.text(request, "on", "rcpt")
    where = parameters.text(request, "where")
    limit = parameters.number(request, "limit", context.config.serve.page_size, 1, MAX_CLUSTERS)
    since, until = parameters.day(request, "since"), parameters.day(request, "until")
    try:
        check_field(field_name, "field")
        check_field(on, "on")
        conditions = parse_where(where, FIELDS)
    except ReportInputError as exc:
        raise RequestError(str(exc)) from None
    try:
        geo = geo_lookup(context.config)
    except UsageError as exc:
        raise RequestError(str(exc), status=500) from None
    try:
        with context.read("cluster the mail") as connection:
            found = cluster_mail(
                connection, field_name, on, conditions, geo, since=since, until=until, most=limit
            )
    finally:
        geo.close()
    result = ClusterResult(found.field, found.on, found.messages, found.clusters[:limit])
    return {
        "field": field_name,
        "on": on,
        "where": where,
        "limit": limit,
        "since": since,
        "until": until,
        "fields": FIELD_NAMES,
        "messages": found.messages,
        "total_clusters": len(found.clusters),
        "clusters": list(cluster_rows(result)),
    }


ROUTES: list[BaseRoute] = list(
    twin_routes("/clusters", clusters_data, "clusters.html.j2", "clusters")
)
