"""Text sorted by code point on every backend: the order Python's sorted() gives.

SQLite compares text byte by byte (UTF-8: code point order). PostgreSQL compares
with the database's collation, which on most installations is a language's
(en_US.UTF-8, or an ICU locale): "B" after "a", "10::" after "1::". Orders users
see must not depend on how the database was created, and the exports merge sorted
streams with Python's comparisons, so every ORDER BY on text goes through
`by_code_point`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, TypeDecorator
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType


class CodePointOrder(ColumnElement[Any]):
    """An expression to sort by, compared by code point (COLLATE "C" on PostgreSQL)."""

    inherit_cache = True
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012 (SQLAlchemy's own type)
        ("sorted", InternalTraversal.dp_clauseelement)
    ]

    def __init__(self, expression: ColumnElement[Any]) -> None:
        self.sorted = expression
        self.type = expression.type


def by_code_point(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    """The expression, to sort by: text in code point order whatever the database's collation."""
    kind = expression.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, String):
        return CodePointOrder(expression)
    return expression


@compiles(CodePointOrder)
def _as_is(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite: text already compares byte by byte."""
    return compiler.process(element.sorted, **kw)


@compiles(CodePointOrder, "postgresql")
def _collated(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    """PostgreSQL: the "C" collation compares bytes, as SQLite does."""
    return f'{compiler.process(element.sorted, **kw)} COLLATE "C"'
