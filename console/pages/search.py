"""The search page and its JSON twin: hosts by address, prefix, hostname, subject or mail address.

What ``q`` looks like decides what is searched: an IP address (the host page), a
network in CIDR notation (the known addresses in it), text with "@" (mail senders
and recipients), any other text (host names and mail subjects).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rolecall.console.context import context_of
from rolecall.console.parameters import text
from rolecall.console.responses import api, page
from rolecall.inventory import host_search
from rolecall.inventory.host_view import bounded


def _network(query: str) -> host_search.Network | None:
    """The network a query in CIDR notation names (host bits allowed), or None."""
    if "/" not in query or "%" in query:
        return None
    try:
        return ipaddress.ip_network(query, strict=False)
    except ValueError:
        return None


def _address(query: str) -> str | None:
    """The query as an IP address in the inventory's form, or None if it is not one."""
    if "%" in query:
        return None
    try:
        return str(ipaddress.ip_address(query))
    except ValueError:
        return None


def search_data(request: Request) -> Mapping[str, Any]:
    """The results of ``q``, grouped by kind, each at most [serve] page_size long."""
    query = text(request, "q")
    context = context_of(request)
    limit = context.config.serve.page_size
    data: dict[str, Any] = {"q": query, "kind": "", "results": {}}
    if not query:
        return data
    results: dict[str, Any] = {}
    with context.read("search the inventory") as connection:
        address = _address(query)
        network = _network(query)
        if address is not None:
            data["kind"] = "address"
            found = [address] if host_search.known(connection, address) else []
            results["address"] = bounded(found, len(found))
        elif network is not None:
            data["kind"] = "prefix"
            data["network"] = str(network)
            results["prefix"] = host_search.in_network(connection, network, limit)
        elif "@" in query:
            data["kind"] = "mail address"
            results["mail_address"] = host_search.by_mail_address(connection, query, limit)
        else:
            data["kind"] = "text"
            results["hostname"] = host_search.by_hostname(connection, query, limit)
            results["subject"] = host_search.by_subject(connection, query, limit)
    data["results"] = results
    return data


def search_page(request: Request) -> Response:
    """The search page; an address the inventory knows goes straight to its host page."""
    data = search_data(request)
    if data["kind"] == "address" and data["results"]["address"].rows:
        target = request.url_for("host", address=data["results"]["address"].rows[0])
        return RedirectResponse(target.path, status_code=303)
    return page(request, "search.html.j2", data)


def search_api(request: Request) -> Response:
    """The search's JSON twin: every kind's results listed, an address too."""
    return api(search_data(request))


ROUTES: list[BaseRoute] = [
    Route("/search", search_page, methods=["GET"], name="search"),
    Route("/api/search", search_api, methods=["GET"], name="api-search"),
]
