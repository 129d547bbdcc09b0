"""The session every command shares: the config, the inventory's location, how to talk."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rolecall.orchestrator.config import Config
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.interrupts import uninterrupted
from rolecall.orchestrator.progress import Reporter

if TYPE_CHECKING:
    from rolecall.inventory.store import Store


@dataclass
class Session:
    """What every command needs: the config, where the database is, how to talk."""

    config: Config
    database: str
    reporter: Reporter
    _store: Store | None = field(default=None, init=False)

    def store(self) -> Store:
        """Open the inventory on first use."""
        if self._store is None:
            # Loaded here, not with this module: an ingest starts reading a large file in a
            # second process first, and loading the database layer overlaps with that.
            from rolecall.inventory.store import Store  # noqa: PLC0415 - see the comment above

            # Creating the schema half-way would leave a database no command can use.
            self._store = uninterrupted(partial(Store.open, self.database))
            if self.config.alerts:
                from rolecall.orchestrator.runs.alerts import deliver_after_derive  # noqa: PLC0415

                config = self.config
                deliver_after_derive(self._store, lambda: config, self.reporter.warn)
        return self._store

    def existing_store(self) -> Store:
        """Open the inventory, refusing to create one: for commands that only read it."""
        path = sqlite_file(self.database)
        if path is not None and not path.exists():
            raise UsageError(
                f"no inventory at {path}: a scan or ingest creates it (or give --db PATH)"
            )
        return self.store()


def sqlite_file(database: str) -> Path | None:
    """The file an SQLite path or URL names; None for other databases and in-memory ones."""
    if "://" not in database:
        return Path(database).expanduser()
    from sqlalchemy import make_url  # noqa: PLC0415 - the database layer loads only when used

    url = make_url(database)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def session_of(ctx: typer.Context) -> Session:
    """The session the root command's callback built."""
    session: Session = ctx.find_root().obj
    return session
