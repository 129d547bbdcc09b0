"""The form token: every form carries the session's token, every post must bring it back."""

from __future__ import annotations

import secrets

from starlette.datastructures import FormData
from starlette.requests import Request

from rolecall.console.errors import RequestError

FIELD = "csrf"


def session_token(request: Request) -> str:
    """The session's form token, made on first need."""
    token = request.session.get(FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[FIELD] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, if it brings the session's token back; else refused (HTTP 403).

    A request signed with a Bearer token needs no form token: no browser adds that
    header on its own, so another site cannot forge such a request.
    """
    form = await request.form()
    if getattr(request.state, "by_token", False):
        return form
    sent = form.get(FIELD)
    expected = request.session.get(FIELD)
    if not (
        isinstance(sent, str)
        and isinstance(expected, str)
        and expected
        and secrets.compare_digest(sent, expected)
    ):
        raise RequestError("the form's token is missing or stale: reload the page and retry", 403)
    return form
