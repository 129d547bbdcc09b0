"""Database errors turned into one StoreError sentence: which database, what failed, why."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError

from rolecall.inventory.errors import StoreError


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
    """The one sentence for a database error: "cannot DOING in database NAME: WHY"."""
    return StoreError(f"cannot {doing} in database {database_name(url)}: {reason(exc)}")


@contextmanager
def translated(url: URL, doing: str) -> Iterator[None]:
    """Raise a database error inside the block as database_error's sentence."""
    try:
        yield
    except DBAPIError as exc:
        raise database_error(url, doing, exc) from exc
