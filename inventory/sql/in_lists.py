"""Long value lists in SQL: bound as one parameter, or cut into slices every database accepts."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import ARRAY, ColumnElement, TypeDecorator, any_, func, literal, select
from sqlalchemy.engine.interfaces import Dialect

T = TypeVar("T")
IN_LIST_SIZE: Final = 500
"""Values bound per IN list (older SQLite builds allow 999 parameters a statement)."""


def in_slices(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most IN_LIST_SIZE items."""
    for start in range(0, len(items), IN_LIST_SIZE):
        yield items[start : start + IN_LIST_SIZE]


def in_list(
    dialect: Dialect, column: ColumnElement[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """The condition that ``column`` is one of ``values`` (strings or integers), however many.

    The list is one bound parameter (a JSON array that SQLite's json_each reads, an
    array's text that PostgreSQL casts), so the statement is compiled once and cached
    whatever the list's length, and one round trip serves the whole list; an expanding
    ``IN`` is rendered anew on every execution, and a slice of it a statement.
    """
    if dialect.name == "postgresql":
        return column == any_(literal(list(values), _ArrayText(column.type)))
    listed = func.json_each(literal(json.dumps(list(values)))).table_valued("value")
    return column.in_(select(listed.c.value))


class _ArrayText(TypeDecorator[list[Any]]):
    """An array of the given item type, bound as PostgreSQL's text of it.

    The SQL casts the parameter itself (``$1::VARCHAR[]``), so the server reads the text
    as an array constant once, and matches each row against it by hash. A cast of a
    parameter typed as text (``CAST($1::VARCHAR AS VARCHAR[])``) is not a constant:
    filtering by it compares each row with every item (minutes for 60,000 items, seen).
    """

    impl = ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        """The array's text, not what the array type would bind (a list)."""
        return _array_text


def _array_text(values: Collection[Any]) -> str:
    """PostgreSQL's text of an array of these values, each quoted.

    Joined here in one pass: psycopg's list adapter dumps each element by itself, four
    times the cost for the tens of thousands of addresses a derivation looks up.
    """
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"
