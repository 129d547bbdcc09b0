"""The session every command shares: the config, the inventory's location, how to talk."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rolecall.orchestrator.cli.loading import loading
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.interrupts import uninterrupted

if TYPE_CHECKING:
    from rolecall.inventory.store import Store
    from rolecall.orchestrator.config import Config
    from rolecall.orchestrator.progress import Reporter

# The config (pydantic), the progress display (rich) and the database layer load on first
# use, not with this module: `rolecall --help` and `rolecall COMMAND --help` need none of
# them, and an ingest starts reading a large file in a second process while they load.


@dataclass
class Session:
    """What every command needs: the config, where the database is, how to talk.

    The root command's options, each acted on when a command first asks: a command that runs
    loads and checks the config before it opens the inventory or reads a setting.
    """

    config_file: Path | None
    database_option: str | None
    quiet: bool
    _store: Store | None = field(default=None, init=False)

    @cached_property
    def config(self) -> Config:
        """The config --config names (or ./rolecall.toml, or the defaults), loaded and checked."""
        with loading():
            from rolecall.orchestrator.config import load_config

            return load_config(self.config_file)[0]

    @cached_property
    def database(self) -> str:
        """The inventory: --db, else the config's [database] url; the config is checked first."""
        config = self.config
        return self.database_option or config.database.url

    @cached_property
    def reporter(self) -> Reporter:
        """Progress, notes and warnings on stderr (progress and notes not with --quiet)."""
        from rolecall.orchestrator.progress import Reporter

        return Reporter(quiet=self.quiet)

    def close(self) -> None:
        """Close the inventory if a command opened it (its WAL checkpointed into the file)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def store(self) -> Store:
        """Open the inventory on first use."""
        if self._store is None:
            database = self.database
            with loading():
                from rolecall.inventory.store import Store

            # Creating the schema half-way would leave a database no command can use.
            self._store = uninterrupted(partial(Store.open, database))
            if self.config.alerts:
                from rolecall.orchestrator.runs.alerts import deliver_after_derive

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
    from sqlalchemy import make_url

    url = make_url(database)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def session_of(ctx: typer.Context) -> Session:
    """The session the root command's callback built."""
    session: Session = ctx.find_root().obj
    return session
