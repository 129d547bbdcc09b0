"""The console served for real (uvicorn on a loopback port, in a thread) for the tests."""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

import httpx
import uvicorn

from rolecall.console.access.hashes import hash_password, token_digest
from rolecall.console.app import create_app
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config, validate_config
from tests.daemon_helpers import free_port

HOST = "127.0.0.1"


@contextmanager
def served(config: Config, store: Store, host: str = HOST) -> Iterator[str]:
    """Serve the console's app object on a free port of ``host`` (TLS if [serve] has a cert)."""
    port = free_port(host)
    cert, key = config.serve.cert or None, config.serve.key or None
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, store),
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the console did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"{'https' if cert else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def console_client(config: Config, store: Store) -> Iterator[httpx.Client]:
    """An HTTP client of a console served for real, keeping its session cookie."""
    with served(config, store) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def access_config(
    users: Mapping[str, tuple[str, str]] = MappingProxyType({}),
    tokens: Mapping[str, tuple[str, str]] = MappingProxyType({}),
    serve: str = "",
) -> Config:
    """A config whose [serve] has these users and tokens (name: level, secret), hashed."""
    entries = [
        f'[[serve.users]]\nname = "{name}"\nlevel = "{level}"\n'
        f'password_hash = "{hash_password(password)}"'
        for name, (level, password) in users.items()
    ]
    entries += [
        f'[[serve.tokens]]\nname = "{name}"\nlevel = "{level}"\n'
        f'token_hash = "{token_digest(token)}"'
        for name, (level, token) in tokens.items()
    ]
    text = "\n".join([f"[serve]\n{serve}", *entries])
    return validate_config(tomllib.loads(text), "test config")
