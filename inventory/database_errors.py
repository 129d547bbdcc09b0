"""Database errors turned into one StoreError sentence: which database, what failed, why."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from rolecall.inventory.errors import StoreError


class DatabaseGoneError(StoreError):
    """The database server went away in the middle of a command: not bad input, exit status 1.

    A StoreError still, so whatever retries or logs a database failure (the daemon, a
    worker) treats it as one.
    """

    exit_status: ClassVar[int] = 1


def quiet_driver_log() -> None:
    """Keep psycopg's own log lines (a lost connection's clean-up) off the user's stderr.

    The error that ends the command already says what happened, in one sentence.
    """
    driver_log = logging.getLogger("psycopg")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
        driver_log.propagate = False


def is_gone(url: URL, exc: DBAPIError) -> bool:
    """Whether an error means the server went away (connection lost or refused), not bad use."""
    if exc.connection_invalidated:
        return True
    # psycopg raises OperationalError for a lost or refused connection; SQLite for a
    # locked or unreadable file, which stays the user's to fix.
    return url.get_backend_name() == "postgresql" and isinstance(exc, OperationalError)


def database_name(url: URL) -> str:
    """The database as its user names it: an SQLite file's path, else the URL without password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def without_password(url: str) -> str:
    """A URL's text with any password replaced by ***, whether or not it parses."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def reason(exc: DBAPIError) -> str:
    """What the database said, first line only: never the statement or its parameters."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


def database_error(url: URL, doing: str, exc: DBAPIError) -> StoreError:
    """The one sentence for a database error: "cannot DOING in database NAME: WHY".

    A server that went away mid-command is DatabaseGoneError (exit 1), anything else StoreError.
    """
    sentence = f"cannot {doing} in database {database_name(url)}: {reason(exc)}"
    return DatabaseGoneError(sentence) if is_gone(url, exc) else StoreError(sentence)


@contextmanager
def translated(url: URL, doing: str) -> Iterator[None]:
    """Raise a database error inside the block as database_error's sentence."""
    try:
        yield
    except DBAPIError as exc:
        raise database_error(url, doing, exc) from exc
