"""The access gate every request passes: who is asking, may they, and the session's form token."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from rolecall.console.access.accounts import Accounts
from rolecall.console.access.csrf import session_token
from rolecall.console.access.throttle import SignInThrottle
from rolecall.console.access.user import User
from rolecall.console.responses import api, page

LOCAL = User("local", "triage")
"""The user of a console bound to loopback with no users or tokens configured."""

SESSION_USER = "user"
"""The session key holding the signed-in user's name."""
SESSION_GENERATION = "generation"
"""The session key holding the user's sign-out count when they signed in."""
PASSWORD_CHECKS = 2
"""argon2 checks run at once (each takes tens of milliseconds and 64 MiB); others wait."""

OPEN_PREFIX = "/static/"
OPEN_PATH = "/login"
"""Reachable without signing in: the stylesheet and script, and the sign-in page."""


def _is_api(request: Request) -> bool:
    """Whether the request is for a JSON twin (answered in JSON, never redirected)."""
    return request.url.path.startswith("/api/")


def _refuse(request: Request, message: str, status: int) -> Response:
    """One sentence, as JSON for /api/ and as a page otherwise."""
    if _is_api(request):
        return api({"error": message}, status=status)
    return page(request, "error.html.j2", {"error": message}, status=status)


def _bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header ("" if malformed), None if absent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AccessGate(BaseHTTPMiddleware):
    """Admit each request as a user, or send it to sign in (pages) or away (401, /api/)."""

    def __init__(self, app: ASGIApp, accounts: Accounts) -> None:
        super().__init__(app)
        self.accounts = accounts
        self.throttle = SignInThrottle()
        self.password_checks = asyncio.Semaphore(PASSWORD_CHECKS)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Set request.state.user (and .csrf, .accounts, .throttle), or refuse the request."""
        request.state.accounts = self.accounts
        request.state.throttle = self.throttle
        request.state.password_checks = self.password_checks
        request.state.by_token = False
        request.state.csrf = ""
        if self.accounts.open:
            request.state.user = LOCAL
            request.state.csrf = session_token(request)
            return await call_next(request)
        token = _bearer(request)
        if token is not None:
            holder = self.accounts.bearer(token) if token else None
            if holder is None:
                return _refuse(request, "the Authorization header's token is not known", 401)
            request.state.user = holder
            request.state.by_token = True
            return await call_next(request)
        request.state.csrf = session_token(request)
        user = self.accounts.signed_in(
            request.session.get(SESSION_USER), request.session.get(SESSION_GENERATION)
        )
        if user is not None:
            request.state.user = user
            return await call_next(request)
        if request.url.path.startswith(OPEN_PREFIX) or request.url.path == OPEN_PATH:
            return await call_next(request)
        if _is_api(request) or not self.accounts.users:
            return _refuse(
                request, "sign in first, or send an Authorization: Bearer TOKEN header", 401
            )
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": wanted}), status_code=303)
