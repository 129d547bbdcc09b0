"""The host page and its JSON twin: everything the inventory holds about one address."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.routing import BaseRoute

from rolecall.console.context import context_of
from rolecall.console.errors import RequestError
from rolecall.console.parameters import MAX_TEXT
from rolecall.console.responses import twin_routes
from rolecall.inventory import host_view
from rolecall.inventory.groups import groups_of_addresses
from rolecall.inventory.store import utcnow
from rolecall.reports.charts import SeriesPoint, line_chart
from rolecall.reports.clusters.view import ClusterResult, client_mail, cluster_mail
from rolecall.reports.evidence import describe_all
from rolecall.reports.geo import GeoLookup

CHART_DAYS = 90
CLUSTERS = (("subject", "rcpt"), ("rcpt", "subject"))
"""The host's mail clustered by subject (listing recipients) and by recipient (subjects)."""
MEMBERS = 10
"""Values listed per cluster (the rest are counted)."""


def host_address(raw: str) -> str:
    """The address of a host path in the inventory's form; anything else is one sentence."""
    text = raw.strip()
    if len(text) > MAX_TEXT or "%" in text:
        raise RequestError(f"address: {text[:MAX_TEXT]!r} is not an IP address")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RequestError(f"address: {text!r} is not an IP address") from None


def _clusters(connection: Connection, address: str, limit: int) -> list[dict[str, Any]]:
    """The host's mail clusters: at most limit of each, listing at most MEMBERS values."""
    found = []
    geo = GeoLookup()
    rows = client_mail(connection, address, [name for pair in CLUSTERS for name in pair])
    try:
        for field_name, on in CLUSTERS:
            result: ClusterResult = cluster_mail(
                connection, field_name, on, [], geo, members=MEMBERS, rows=rows, most=limit
            )
            found.append(
                {
                    "field": result.field,
                    "on": result.on,
                    "messages": result.messages,
                    "clusters": host_view.bounded(result.clusters[:limit], len(result.clusters)),
                }
            )
    finally:
        geo.close()
    return found


def _with_evidence_text(
    connection: Connection, roles: host_view.Bounded[host_view.RoleSeen]
) -> list[dict[str, Any]]:
    """The roles with their evidence references read back as text."""
    texts = describe_all(connection, (role.evidence for role in roles.rows))
    return [
        {**asdict(role), "evidence_text": text}
        for role, text in zip(roles.rows, texts, strict=True)
    ]


def host_data(request: Request) -> Mapping[str, Any]:
    """Everything about one host, each list at most [serve] page_size long."""
    address = host_address(request.path_params["address"])
    context = context_of(request)
    limit = context.config.serve.page_size
    with context.read("read the host") as connection:
        span = host_view.seen_span(connection, address)
        if span is None:
            raise RequestError(f"no host {address} in the inventory", status=404)
        roles = host_view.roles(connection, address, limit)
        findings = host_view.findings(connection, address, limit)
        finding_texts = describe_all(connection, (found.evidence for found in findings.rows))
        end, per_day = host_view.connections_per_day(
            connection, address, CHART_DAYS, utcnow().date()
        )
        data = {
            "address": address,
            "first_seen": span[0],
            "last_seen": span[1],
            "hostnames": host_view.names(connection, address, limit),
            "groups": groups_of_addresses(connection, [address]).get(address, []),
            "roles": host_view.bounded(_with_evidence_text(connection, roles), roles.total),
            "services": host_view.services(connection, address, limit),
            "certificates": host_view.certificates(connection, address, limit),
            "mail": host_view.mail_sent(connection, address, limit),
            "mail_clusters": _clusters(connection, address, limit),
            "proxies_offered": host_view.proxy_traffic(connection, address, limit, offered=True),
            "proxies_used": host_view.proxy_traffic(connection, address, limit, offered=False),
            "connections_per_day": [{"day": day, "connections": n} for day, n in per_day],
            "findings": host_view.bounded(
                [
                    {**asdict(found), "evidence_text": text}
                    for found, text in zip(findings.rows, finding_texts, strict=True)
                ],
                findings.total,
            ),
            "finding_events": host_view.finding_events(connection, address, limit),
        }
    data["chart"] = line_chart(
        f"Connections {address} opened per day, {CHART_DAYS} days to {end.isoformat()}",
        [SeriesPoint(day, float(n)) for day, n in per_day],
    )
    return data


ROUTES: list[BaseRoute] = [*twin_routes("/hosts/{address}", host_data, "host.html.j2", "host")]
