"""Many rows through one statement, compiled once and handed to the driver as plain tuples.

SQLAlchemy's per-row parameter handling costs more than SQLite's own insert or
update at ingest and derivation rates; here the statement is compiled once per
column set, each value goes through its column type's bind processor, and the
rows go to the DB-API driver's executemany directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Row = Mapping[str, Any]


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL, its parameter names in order, their processors and constants."""

    sql: str
    names: list[str]
    processors: list[Any]
    constants: dict[str, Any]
    positional: bool


class BulkStatement:
    """A statement executed for many rows, compiled once per dialect and column set."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, connection: Connection, rows: Iterable[Row]) -> None:
        """Run the statement once per row (all rows have the same keys)."""
        batch = list(rows)
        if not batch:
            return
        compiled = self._compile(connection, batch[0])
        names, processors, constants = compiled.names, compiled.processors, compiled.constants
        converted = (
            [
                value if convert is None or value is None else convert(value)
                for value, convert in zip(
                    [row[name] if name in row else constants[name] for name in names],
                    processors,
                    strict=True,
                )
            ]
            for row in batch
        )
        params: list[Any] = (
            [tuple(values) for values in converted]
            if compiled.positional
            else [dict(zip(names, values, strict=True)) for values in converted]
        )
        connection.exec_driver_sql(compiled.sql, params)

    def _compile(self, connection: Connection, sample: Row) -> _Compiled:
        """The statement compiled for this dialect and the sample row's columns."""
        dialect = connection.dialect
        key = (dialect.name, tuple(sample))
        found = self._compiled.get(key)
        if found is not None:
            return found
        compiled = self._statement.compile(dialect=dialect, column_keys=list(sample))
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"{type(self._statement).__name__} does not compile to SQL")
        if compiled.positional and compiled.positiontup is not None:
            names = list(compiled.positiontup)
        else:
            names = [compiled.bind_names[bind] for bind in compiled.binds.values()]
        # Literals inside the statement (e.g. the '' of an "unless empty" case) are binds too.
        constants = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if name not in sample
        }
        # The dialect's implementation of each type, as SQLAlchemy itself binds it (a
        # TypeDecorator's own processor alone would store another text format).
        processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ]
        found = _Compiled(compiled.string, names, processors, constants, compiled.positional)
        self._compiled[key] = found
        return found
