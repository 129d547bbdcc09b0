"""Pages and their JSON twins: one function gives the data, two routes show it.

Every page ``/PATH`` has a twin ``/api/PATH`` with the same query parameters:
the page renders the data through its template, the twin returns it as JSON
(times as ISO 8601 UTC to the microsecond, as every export writes them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from rolecall.console.context import context_of
from rolecall.inventory.exports import iso

PageData = Callable[[Request], Mapping[str, Any]]


def plain(value: Any) -> Any:
    """A value as JSON carries it: times as ISO 8601 UTC, days as ISO dates, tuples as lists."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def page(request: Request, template: str, data: Mapping[str, Any], status: int = 200) -> Response:
    """Render a page template with its data, the user and the form token."""
    context = context_of(request)
    html = context.templates.get_template(template).render(
        request=request,
        user=getattr(request.state, "user", None),
        csrf=getattr(request.state, "csrf", ""),
        **data,
    )
    return HTMLResponse(html, status_code=status)


def api(data: Mapping[str, Any], status: int = 200) -> Response:
    """The JSON twin of a page's data."""
    return JSONResponse(plain(data), status_code=status)


def twin_routes(path: str, data: PageData, template: str, name: str) -> list[Route]:
    """The page at ``path`` and its JSON twin at ``/api`` + ``path``, from one data function."""

    def html(request: Request) -> Response:
        """The page."""
        return page(request, template, data(request))

    def json(request: Request) -> Response:
        """The page's JSON twin."""
        return api(data(request))

    return [
        Route(path, html, methods=["GET"], name=name),
        Route(f"/api{path}", json, methods=["GET"], name=f"api-{name}"),
    ]
