"""The findings page and its JSON twin: filter, sort and page; acknowledge and un-acknowledge.

``/findings`` and ``/api/findings`` take the same query parameters (all optional):
status (open | acknowledged | resolved | all), rule, severity, group, since and
until (last seen in [since, until)), q (text in address, summary or rule), sort,
order (asc | desc) and page. The forms post to ``/findings/acknowledge`` and
``/findings/unacknowledge`` and come back (303) to the page they were sent from.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rolecall.console import parameters
from rolecall.console.access.csrf import checked_form
from rolecall.console.access.user import require_triage, user_of
from rolecall.console.context import ConsoleContext, context_of
from rolecall.console.errors import RequestError
from rolecall.console.responses import api, page, plain
from rolecall.inventory.finding_pages import DESCENDING_FIRST, SORTS, FindingQuery, finding_page
from rolecall.inventory.findings import SEVERITIES, acknowledge, unacknowledge
from rolecall.inventory.rules import all_rules
from rolecall.orchestrator.runs.alerts import deliver_configured
from rolecall.reports.evidence import describe_all

STATUSES: Final = ("open", "acknowledged", "resolved", "all")
ORDERS: Final = ("asc", "desc")
FILTERS: Final = ("status", "rule", "severity", "group", "since", "until", "q", "sort", "order")
"""The query parameters a page of findings keeps in its links and forms (with page)."""
MAX_PAGE: Final = 1_000_000
MAX_NOTE: Final = 2000
"""The longest note an acknowledgement takes."""

log = logging.getLogger(__name__)


def _group(request: Request, context: ConsoleContext) -> str:
    """The group parameter: a group the config declares (or empty)."""
    names = [entry.name for entry in context.config.groups]
    value = parameters.text(request, "group")
    if value and value not in names:
        declared = ", ".join(names) if names else "none ([[groups]] in the config declares them)"
        raise RequestError(f"group: {value!r} is not a group; the groups are {declared}")
    return value


def read_query(request: Request, context: ConsoleContext) -> tuple[FindingQuery, dict[str, Any]]:
    """The findings query the request's parameters ask for, and the filters as applied."""
    status = parameters.choice(request, "status", STATUSES) or "open"
    rule = parameters.choice(request, "rule", [known.name for known in all_rules()])
    severity = parameters.choice(request, "severity", SEVERITIES)
    group = _group(request, context)
    since, until = parameters.day(request, "since"), parameters.day(request, "until")
    if since is not None and until is not None and until <= since:
        raise RequestError("until: must be after since")
    text = parameters.text(request, "q")
    sort = parameters.choice(request, "sort", SORTS) or "last_seen"
    natural = "desc" if sort in DESCENDING_FIRST else "asc"
    order = parameters.choice(request, "order", ORDERS) or natural
    query = FindingQuery(
        status=None if status == "all" else status,
        rule=rule or None,
        severity=severity or None,
        group=group or None,
        since=since,
        until=until,
        text=text,
        sort=sort,
        descending=order == "desc",
    )
    filters = {
        "status": status,
        "rule": rule or None,
        "severity": severity or None,
        "group": group or None,
        "since": since,
        "until": until,
        "q": text,
        "sort": sort,
        "order": order,
    }
    return query, filters


def findings_data(request: Request) -> dict[str, Any]:
    """One page of the findings the filters select, with their evidence as text (JSON-plain)."""
    context = context_of(request)
    query, filters = read_query(request, context)
    number = parameters.number(request, "page", 1, 1, MAX_PAGE)
    size = context.config.serve.page_size
    with context.read("list the findings") as connection:
        found = finding_page(connection, query, (number - 1) * size, size)
        texts = describe_all(connection, (row.evidence for row in found.rows))
    rows = [
        plain(row) | {"evidence_text": text.split("\n") if text else []}
        for row, text in zip(found.rows, texts, strict=True)
    ]
    return {
        "total": found.total,
        "page": number,
        "pages": max(1, math.ceil(found.total / size)),
        "page_size": size,
        "filters": plain(filters),
        "rows": rows,
    }


def kept_parameters(pairs: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    """The filter and page parameters among query pairs, the empty ones dropped."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return {key: value for key, value in items if key in (*FILTERS, "page") and value}


def _page_links(request: Request, data: Mapping[str, Any]) -> dict[str, str]:
    """Query strings of the first, previous, next and last pages, the filters kept."""
    kept = kept_parameters(request.query_params)
    links = {}
    targets = {
        "first": 1,
        "previous": data["page"] - 1,
        "next": data["page"] + 1,
        "last": data["pages"],
    }
    for name, number in targets.items():
        if 1 <= number <= data["pages"] and number != data["page"]:
            links[name] = "?" + urlencode(kept | {"page": str(number)})
    return links


def findings_html(request: Request) -> Response:
    """The findings page: the filter form, the table, the pager and the triage forms."""
    data = findings_data(request)
    context = context_of(request)
    raw = {key: request.query_params.get(key, "") for key in FILTERS}
    extra = {
        "raw": raw,
        "links": _page_links(request, data),
        "back": urlencode(kept_parameters(request.query_params)),
        "rules": sorted(known.name for known in all_rules()),
        "severities": SEVERITIES,
        "statuses": STATUSES,
        "sorts": SORTS,
        "groups": [entry.name for entry in context.config.groups],
        "triage": user_of(request).level == "triage",
    }
    return page(request, "findings.html.j2", data | extra)


def findings_json(request: Request) -> Response:
    """The findings page's JSON twin."""
    return api(findings_data(request))


def _field(form: FormData, name: str, longest: int) -> str:
    """A posted text field, stripped; missing, empty or too long is refused."""
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if name != "note" and not text:
        raise RequestError(f"{name}: missing from the form")
    if len(text) > longest:
        raise RequestError(f"{name}: longer than {longest} characters")
    return text


def _back_to(request: Request, form: FormData) -> str:
    """The findings page the form was posted from (only its filters: never another site)."""
    sent = form.get("back")
    pairs = parse_qsl(sent if isinstance(sent, str) else "")
    query = urlencode(kept_parameters(pairs))
    return str(request.url_for("findings")) + (f"?{query}" if query else "")


def _deliver_alerts(context: ConsoleContext) -> None:
    """Send the configured alert outputs the event just recorded (failures are logged)."""
    deliver_configured(context.store, context.config, log.warning)


async def acknowledge_post(request: Request) -> Response:
    """Acknowledge a finding with the note typed; back to the page it was posted from."""
    require_triage(request)
    form = await checked_form(request)
    rule, address = _field(form, "rule", 200), _field(form, "address", 200)
    note = _field(form, "note", MAX_NOTE)
    context = context_of(request)

    def write() -> bool:
        """Acknowledge in one transaction; whether there was such a finding."""
        with context.store.transaction("acknowledge a finding") as connection:
            return acknowledge(connection, rule, address, note, datetime.now(UTC)) is not None

    if not await run_in_threadpool(write):
        raise RequestError(f"no {rule} finding on {address}", 404)
    return RedirectResponse(
        _back_to(request, form), 303, background=BackgroundTask(_deliver_alerts, context)
    )


async def unacknowledge_post(request: Request) -> Response:
    """Open an acknowledged finding again; back to the page it was posted from."""
    require_triage(request)
    form = await checked_form(request)
    rule, address = _field(form, "rule", 200), _field(form, "address", 200)
    context = context_of(request)

    def write() -> str | None:
        """Un-acknowledge in one transaction; the status the finding had (None: no such)."""
        with context.store.transaction("un-acknowledge a finding") as connection:
            before = unacknowledge(connection, rule, address)
        return None if before is None else before.status

    status = await run_in_threadpool(write)
    if status is None:
        raise RequestError(f"no {rule} finding on {address}", 404)
    if status != "acknowledged":
        raise RequestError(f"the {rule} finding on {address} is {status}, not acknowledged")
    return RedirectResponse(
        _back_to(request, form), 303, background=BackgroundTask(_deliver_alerts, context)
    )


ROUTES: list[BaseRoute] = [
    Route("/findings", findings_html, methods=["GET"], name="findings"),
    Route("/api/findings", findings_json, methods=["GET"], name="api-findings"),
    Route("/findings/acknowledge", acknowledge_post, methods=["POST"], name="findings-ack"),
    Route("/findings/unacknowledge", unacknowledge_post, methods=["POST"], name="findings-unack"),
]
