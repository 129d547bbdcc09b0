"""Long value lists in SQL: bound as one parameter, or cut into slices every database accepts."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import ARRAY, ColumnElement, Text, any_, cast, func, literal, select
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
        array = cast(literal(_array_text(values), Text), ARRAY(column.type))
        return column == any_(array)
    listed = func.json_each(literal(json.dumps(list(values)))).table_valued("value")
    return column.in_(select(listed.c.value))


def _array_text(values: Collection[Any]) -> str:
    """PostgreSQL's text of an array of these values, each quoted.

    Joined here in one pass: psycopg's list adapter dumps each element by itself, four
    times the cost for the tens of thousands of addresses a derivation looks up.
    """
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"
