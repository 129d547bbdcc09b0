"""What every page of the console reads: the inventory, the config and the templates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jinja2
from sqlalchemy import Connection
from starlette.requests import Request

from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config


@dataclass(frozen=True)
class ConsoleContext:
    """The one inventory and config a console serves, and its template environment."""

    store: Store
    config: Config
    templates: jinja2.Environment

    @contextmanager
    def read(self, doing: str) -> Iterator[Connection]:
        """A connection to read the inventory with (each request sees what is committed now)."""
        with self.store.read(doing) as connection:
            yield connection


def context_of(request: Request) -> ConsoleContext:
    """The console context of the app serving a request."""
    context: ConsoleContext = request.app.state.console
    return context
