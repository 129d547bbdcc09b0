"""Signing in and out: the login page, its form post, and the logout post."""

from __future__ import annotations

import asyncio
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rolecall.console.access.accounts import Accounts
from rolecall.console.access.csrf import FIELD, checked_form
from rolecall.console.access.gate import SESSION_GENERATION, SESSION_USER
from rolecall.console.access.throttle import SignInThrottle
from rolecall.console.responses import page

HOME = "/findings"
FAILED = "That name and password do not sign in."
WAIT = "Too many failed sign-ins from your address: wait a few minutes, then try again."


def _next(value: object) -> str:
    """Where to go after signing in: a path of this console, else the findings."""
    # "//host" and "/\\host" would leave the console; only a plain local path is followed.
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return HOME


def _client(request: Request) -> str:
    """The client's address, the key failed sign-ins are counted by."""
    return request.client.host if request.client else "?"


def _form(request: Request, next_path: str, error: str = "", status: int = 200) -> Response:
    """The login page."""
    return page(request, "login.html.j2", {"next": next_path, "error": error}, status=status)


def login_page(request: Request) -> Response:
    """The sign-in form (a console without users has no one to sign in)."""
    accounts: Accounts = request.state.accounts
    next_path = _next(request.query_params.get("next"))
    if not accounts.users:
        return RedirectResponse(next_path, status_code=303)
    return _form(request, next_path)


async def login(request: Request) -> Response:
    """Sign in with a name and password; a failure says so without saying which was wrong."""
    accounts: Accounts = request.state.accounts
    throttle: SignInThrottle = request.state.throttle
    form = await checked_form(request)
    next_path = _next(form.get("next"))
    if not accounts.users:
        return RedirectResponse(next_path, status_code=303)
    client = _client(request)
    name, password = form.get("name"), form.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return _form(request, next_path, FAILED, status=401)
    if not throttle.begin(client, name):
        return _form(request, next_path, WAIT, status=429)
    checks: asyncio.Semaphore = request.state.password_checks
    async with checks:
        # argon2 takes tens of milliseconds and 64 MiB: off the event loop, a few at a time.
        user = await run_in_threadpool(accounts.check_password, name, password)
    if user is None:
        return _form(request, next_path, FAILED, status=401)
    throttle.succeeded(client, name)
    # A new session and form token on sign-in: nothing set before it carries over.
    request.session.clear()
    request.session[SESSION_USER] = user.name
    request.session[SESSION_GENERATION] = accounts.generation(user.name)
    request.session[FIELD] = secrets.token_urlsafe(32)
    return RedirectResponse(next_path, status_code=303)


async def logout(request: Request) -> Response:
    """Sign out (a form post with the session's token) and go back to the sign-in page."""
    await checked_form(request)
    user = getattr(request.state, "user", None)
    if user is not None and not request.state.by_token:
        # Ends every session of the user, also a copy of this cookie kept elsewhere.
        accounts: Accounts = request.state.accounts
        accounts.sign_out(user.name)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def access_routes() -> list[BaseRoute]:
    """The routes of signing in and out."""
    return [
        Route("/login", login_page, methods=["GET"], name="login"),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]
