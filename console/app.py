"""The console's one app object: the CLI serves it (uvicorn) and the tests talk to it."""

from __future__ import annotations

import secrets
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rolecall.console.access.accounts import Accounts
from rolecall.console.access.gate import AccessGate
from rolecall.console.access.headers import SecurityHeaders
from rolecall.console.access.routes import access_routes
from rolecall.console.context import ConsoleContext
from rolecall.console.errors import RequestError
from rolecall.console.pages import all_routes
from rolecall.console.responses import api, page
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.reports.render import BUILTIN_TEMPLATES, seconds_in, to_the_second

HERE = Path(__file__).parent


def templates() -> jinja2.Environment:
    """The console's templates, with the report's (its chart macros) behind them."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(HERE / "templates"), str(BUILTIN_TEMPLATES)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["second"] = to_the_second
    env.filters["seconds_in"] = seconds_in
    return env


def _home(request: Request) -> Response:
    """The console opens on the open findings."""
    return RedirectResponse(request.url_for("findings"), status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    """A request the console cannot answer: one sentence, as a page or as JSON."""
    status = exc.status if isinstance(exc, RequestError) else 400
    if request.url.path.startswith("/api/"):
        return api({"error": str(exc)}, status=status)
    return page(request, "error.html.j2", {"error": str(exc)}, status=status)


def create_app(config: Config, store: Store) -> Starlette:
    """The console for one inventory; every request reads what is committed at that moment."""
    routes = [
        Route("/", _home, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *access_routes(),
        *all_routes(),
    ]
    serve = config.serve
    middleware = [
        Middleware(SecurityHeaders),
        # A new secret each start: sessions end with the process, nothing secret is stored.
        Middleware(
            SessionMiddleware,
            secret_key=secrets.token_urlsafe(32),
            session_cookie="rolecall_session",
            max_age=serve.session_minutes * 60,
            same_site="strict",
            https_only=bool(serve.cert),
        ),
        Middleware(AccessGate, accounts=Accounts.of(serve)),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={RequestError: _refused}
    )
    app.state.console = ConsoleContext(store, config, templates())
    return app
