"""The session every command shares: the config, the inventory's location, how to talk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from rolecall.orchestrator.config import Config
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

            self._store = Store.open(self.database)
        return self._store


def session_of(ctx: typer.Context) -> Session:
    """The session the root command's callback built."""
    session: Session = ctx.find_root().obj
    return session
