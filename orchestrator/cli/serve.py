"""`rolecall serve`: the triage console on the web; `serve adduser` and `serve addtoken`."""

from __future__ import annotations

import errno
import gc
import getpass
import ipaddress
import json
import signal
import socket
import sys
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.errors import RunError, UsageError

if TYPE_CHECKING:
    from rolecall.inventory.store import Store
    from rolecall.orchestrator.config import Config
    from rolecall.orchestrator.progress import Reporter

# The web stack (starlette, uvicorn), argon2 and the config's checks (pydantic) load in the
# command that uses them: every other command starts without them.

serve_app = typer.Typer(
    invoke_without_command=True,
    help="The triage console on the web; `serve adduser` and `serve addtoken` give access.",
)

MIN_PASSWORD = 8
GRACEFUL_SECONDS = 5


class Level(StrEnum):
    """What a console user or token may do."""

    read = "read"
    triage = "triage"


LevelOption = Annotated[
    Level, typer.Option("--level", help="read: see everything; triage: also acknowledge.")
]


def _listener(host: str, port: int, shown: str) -> socket.socket:
    """A socket bound to host:port; in use or not this machine's address is one sentence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Connections accepted here inherit it: without it a small reply can wait 40 ms for an ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RunError(
                f"{shown} is in use by another program: give --bind another port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--bind {shown}: {host} is not an address of this machine") from None
        raise RunError(f"cannot listen on {shown}: {exc.strerror}") from None
    return sock


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM once the server has stopped on it: nothing is left to do."""


def _run(config: Config, store: Store, sock: socket.socket, url: str, reporter: Reporter) -> None:
    """Serve the console on the socket until Ctrl-C or SIGTERM, then stop cleanly."""
    import uvicorn

    from rolecall.console.app import create_app

    serve = config.serve
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, store),
            log_level="warning",
            ssl_certfile=serve.cert or None,
            ssl_keyfile=serve.key or None,
            # The client's address counts failed sign-ins: no header may claim another.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
    )
    # What exists now (the app, the database layer, the templates) lives as long as the
    # process: the cyclic collector need not walk it on every full collection (those walks
    # were the slowest page loads of a busy host, 180 ms against 70 ms).
    gc.freeze()
    reporter.warn(f"rolecall: console at {url} (Ctrl-C stops it)")
    # uvicorn stops on the signal itself, then raises it again for the handler before it:
    # that handler does nothing, so the command ends as a clean stop (exit status 0).
    taken = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.signal(signum, _stopped) for signum in taken}
    try:
        server.run(sockets=[sock])
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        sock.close()
    reporter.warn("rolecall: console stopped")


@serve_app.callback()
def serve(
    ctx: typer.Context,
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            metavar="ADDR:PORT",
            help="Listen here (default [serve] bind, 127.0.0.1:8080); [::1]:8080 for IPv6.",
        ),
    ] = None,
) -> None:
    """Serve the triage console: findings, hosts, mail and changes, with /api/ JSON twins."""
    if ctx.invoked_subcommand is not None:
        return
    from rolecall.orchestrator.config import split_bind

    session = session_of(ctx)
    config = session.config
    where = bind or config.serve.bind
    try:
        host, port = split_bind(where)
    except ValueError as exc:
        raise UsageError(f"--bind: {exc}") from None
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    loopback = ipaddress.ip_address(host).is_loopback
    if not loopback and not (config.serve.users or config.serve.tokens):
        raise UsageError(
            f"{shown} is reachable from other hosts: add [[serve.users]] (rolecall serve"
            " adduser) or [[serve.tokens]] (rolecall serve addtoken) to the config first"
        )
    if not loopback and not config.serve.cert:
        session.reporter.warn(
            "rolecall: warning: passwords and tokens cross the network unencrypted:"
            " set [serve] cert and key for TLS"
        )
    store = session.existing_store()
    sock = _listener(host, port, shown)
    scheme = "https" if config.serve.cert else "http"
    _run(config, store, sock, f"{scheme}://{shown}/", session.reporter)


def _checked_name(name: str) -> None:
    """Refuse a name [serve] would refuse, in one sentence."""
    from pydantic import TypeAdapter, ValidationError

    from rolecall.orchestrator.config import AccessName

    try:
        TypeAdapter(AccessName).validate_python(name)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"])
        raise UsageError(f"NAME {name!r}: {message} (letters, digits, _ . @ -)") from None


def _entry(table: str, values: dict[str, str]) -> str:
    """One TOML array-of-tables entry ([[serve.users]] ...) to paste into the config."""
    # The values are ASCII names, levels and hashes: a JSON string is a TOML basic string.
    lines = [f"[[{table}]]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    return "\n".join(lines)


def _warn_if_taken(ctx: typer.Context, name: str) -> None:
    """Say so if the config already has a user or token of this name (its entry is replaced)."""
    serve = session_of(ctx).config.serve
    if name in {user.name for user in serve.users} | {token.name for token in serve.tokens}:
        session_of(ctx).reporter.warn(
            f"rolecall: {name!r} is already in [serve]: replace that entry with this one"
        )


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a prompt that does not echo."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise UsageError("the two passwords differ: nothing was printed; try again")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password is shorter than {MIN_PASSWORD} characters")
    return password


@serve_app.command("adduser")
def adduser(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name to sign in with.")],
    level: LevelOption,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin, not a prompt."),
    ] = False,
) -> None:
    """Print a [[serve.users]] entry (argon2id password hash) to add to the config."""
    from rolecall.console.access.hashes import hash_password

    _checked_name(name)
    _warn_if_taken(ctx, name)
    password_hash = hash_password(_read_password(password_stdin))
    values = {"name": name, "level": level.value, "password_hash": password_hash}
    typer.echo(_entry("serve.users", values))


@serve_app.command("addtoken")
def addtoken(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who or what holds the token.")],
    level: LevelOption,
) -> None:
    """Make an API token: print it once (stderr) and its [[serve.tokens]] entry (stdout)."""
    from rolecall.console.access.hashes import new_token, token_digest

    _checked_name(name)
    token = new_token()
    values = {"name": name, "level": level.value, "token_hash": token_digest(token)}
    _warn_if_taken(ctx, name)
    session_of(ctx).reporter.warn(
        f"rolecall: token for {name} (shown only now; send it as Authorization: Bearer TOKEN):"
    )
    session_of(ctx).reporter.warn(token)
    typer.echo(_entry("serve.tokens", values))
