"""Many rows through one statement, compiled once and handed to the driver as plain tuples.

SQLAlchemy's per-row parameter handling costs more than SQLite's own insert or
update at ingest and derivation rates; here the statement is compiled once per
column set, each value goes through its column type's bind processor, and the
rows go to the DB-API driver's executemany directly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from rolecall.inventory.sql.column_types import utc_as_is

Row = Mapping[str, Any]
Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL, its parameter names in order, their processors and constants."""

    sql: str
    names: list[str]
    processors: list[Processor | None]
    constants: dict[str, Any]
    positional: bool


class BulkStatement:
    """A statement executed for many rows, compiled once per dialect and column set."""

    def __init__(self, statement: ClauseElement, copy_into: Table | None = None) -> None:
        """``copy_into``: the statement is a plain INSERT into this table (no conflict
        clause, nothing returned), so PostgreSQL may take the rows by COPY."""
        self._statement = statement
        self._copy_into = copy_into
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, connection: Connection, rows: Iterable[Row]) -> None:
        """Run the statement once per row (all rows have the same keys)."""
        batch = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return
        compiled = self._compile(connection, batch[0])
        rows_of_values = zip(*_columns(compiled, batch), strict=True)
        if self._copy_into is not None and connection.dialect.name == "postgresql":
            # psycopg sends an executemany as one statement per row; COPY streams them.
            _copy(connection, self._copy_into, compiled.names, rows_of_values)
            return
        params: list[Any] = (
            list(rows_of_values)
            if compiled.positional
            else [dict(zip(compiled.names, values, strict=True)) for values in rows_of_values]
        )
        connection.exec_driver_sql(compiled.sql, params)

    def processor(self, connection: Connection, names: Sequence[str], name: str) -> Processor:
        """What turns one value of column ``name`` into the driver's (rows of ``names``)."""
        compiled = self._compile(connection, names)
        found = compiled.processors[compiled.names.index(name)]
        return found if found is not None else _same

    def execute_values(
        self,
        connection: Connection,
        names: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        converted: Collection[str],
    ) -> None:
        """Run the statement once per row of values in the order of ``names``.

        The values of the columns in ``converted`` went through ``processor`` already (as the
        rows were made, the cheapest place); the others are converted here, column by column.
        """
        if not rows:
            return
        compiled = self._compile(connection, names)
        index = {name: position for position, name in enumerate(names)}
        pending = [
            (index[name], convert)
            for name, convert in zip(compiled.names, compiled.processors, strict=True)
            if convert is not None and name not in converted and name in index
        ]
        if pending:
            columns = [list(column) for column in zip(*rows, strict=True)]
            for position, convert in dict(pending).items():
                columns[position] = [
                    value if value is None else convert(value) for value in columns[position]
                ]
            rows = list(zip(*columns, strict=True))
        if list(compiled.names) != list(names):
            rows = _reordered(compiled, names, rows)
        if self._copy_into is not None and connection.dialect.name == "postgresql":
            _copy(connection, self._copy_into, compiled.names, rows)
            return
        params: Sequence[Any] = (
            rows
            if compiled.positional
            else [dict(zip(compiled.names, values, strict=True)) for values in rows]
        )
        connection.exec_driver_sql(compiled.sql, list(params))

    def _compile(self, connection: Connection, sample: Iterable[str]) -> _Compiled:
        """The statement compiled for this dialect and the sample row's columns (its keys)."""
        dialect = connection.dialect
        key = (dialect.name, tuple(sample))
        found = self._compiled.get(key)
        if found is not None:
            return found
        compiled = self._statement.compile(dialect=dialect, column_keys=list(key[1]))
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"{type(self._statement).__name__} does not compile to SQL")
        if compiled.positional and compiled.positiontup is not None:
            names = list(compiled.positiontup)
        else:
            names = [compiled.bind_names[bind] for bind in compiled.binds.values()]
        # Literals inside the statement (e.g. the '' of an "unless empty" case) are binds too,
        # and so are the columns the rows leave out (their default then, as SQLAlchemy does).
        constants = {
            name: _constant(self._statement, name, bind.effective_value)
            for name, bind in compiled.binds.items()
            if name not in key[1]
        }
        # The dialect's implementation of each type, as SQLAlchemy itself binds it (a
        # TypeDecorator's own processor alone would store another text format).
        processors = [
            _faster(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names
        ]
        found = _Compiled(compiled.string, names, processors, constants, compiled.positional)
        self._compiled[key] = found
        return found


def _reordered(
    compiled: _Compiled, names: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Rows of values in the order of ``names`` put in the statement's parameter order."""
    index = {name: position for position, name in enumerate(names)}
    width = len(names)
    # A parameter the rows leave out takes its constant, appended to each row once.
    extra = [name for name in dict.fromkeys(compiled.names) if name not in index]
    if extra:
        tail = tuple(_converted_constant(compiled, name) for name in extra)
        index.update({name: width + offset for offset, name in enumerate(extra)})
        rows = [row + tail for row in rows]
    pick = itemgetter(*(index[name] for name in compiled.names))
    if len(compiled.names) == 1:
        return [(value,) for value in map(pick, rows)]
    return list(map(pick, rows))


def _converted_constant(compiled: _Compiled, name: str) -> Any:
    """A constant parameter's value, as the driver takes it."""
    constant = compiled.constants[name]
    convert = compiled.processors[compiled.names.index(name)]
    return constant if convert is None or constant is None else convert(constant)


def _same(value: Any) -> Any:
    """The value as it is (a column the driver takes without conversion)."""
    return value


def _columns(compiled: _Compiled, batch: list[Row]) -> list[list[Any]]:
    """The statement's parameters for every row, a column at a time, converted for the driver.

    Column by column, each value goes through its processor in a tight loop,
    and taking the values out of the rows and putting them back together are
    single C calls (itemgetter, zip) rather than a Python step per value. A
    parameter used twice (e.g. both arms of a CASE) is converted once.
    """
    present = [name for name in dict.fromkeys(compiled.names) if name in batch[0]]
    if len(present) == 1:
        taken = [list(map(itemgetter(present[0]), batch))]
    elif present:
        taken = [list(column) for column in zip(*map(itemgetter(*present), batch), strict=True)]
    else:
        taken = []
    raw = dict(zip(present, taken, strict=True))
    converted: dict[str, list[Any]] = {}
    for name, convert in zip(compiled.names, compiled.processors, strict=True):
        if name in converted:
            continue
        if name not in raw:
            constant = compiled.constants[name]
            value = constant if convert is None or constant is None else convert(constant)
            converted[name] = [value] * len(batch)
        elif convert is None:
            converted[name] = raw[name]
        else:
            converted[name] = [value if value is None else convert(value) for value in raw[name]]
    return [converted[name] for name in compiled.names]


def _copy(
    connection: Connection, table: Table, names: list[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Insert rows of converted values (in the order of names) with PostgreSQL's COPY."""
    quote = connection.dialect.identifier_preparer
    columns = ", ".join(quote.quote(table.c[name].name) for name in names)
    target = quote.format_table(table)
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the database connection is closed")
    types = _copy_types(connection, driver, table, names)
    binary = " (FORMAT BINARY)" if types is not None else ""
    statement = f"COPY {target} ({columns}) FROM STDIN{binary}"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        if types is not None:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _copy_types(
    connection: Connection, driver: Any, table: Table, names: list[str]
) -> list[str] | None:
    """The PostgreSQL type names of the columns, if the driver knows them all (then it can
    write the rows in binary).

    In binary, a timestamp is a number the driver computes in C; as text, each is
    formatted by isoformat (the largest cost of a derivation's COPY, measured).
    """
    found = [table.c[name].type.compile(dialect=connection.dialect).lower() for name in names]
    known = all(driver.adapters.types.get(name) is not None for name in found)
    return found if known else None


def _constant(statement: ClauseElement, name: str, value: Any) -> Any:
    """A bind's fixed value: a literal's, or the scalar default of a column left out."""
    table = getattr(statement, "table", None)
    column = table.c.get(name) if isinstance(table, Table) else None
    default = column.default if column is not None else None
    if value is None and isinstance(default, ScalarElementColumnDefault):
        return default.arg
    return value


def _faster(slow: Processor | None) -> Processor | None:
    """A faster equivalent of a bind processor, if one gives the same on probe values."""
    if slow is None:
        return None
    for make, probes in _SHORTCUTS:
        fast = make(slow)
        try:
            if all(fast(probe) == slow(probe) for probe in probes):
                return fast
        except (TypeError, ValueError, AttributeError):
            continue
    return slow


def _datetime_text(slow: Processor) -> Processor:
    """SQLite's text for aware UTC datetimes from one C call; anything else as ``slow`` does."""

    def convert(value: Any) -> Any:
        """The stored text of one value."""
        if type(value) is datetime and value.tzinfo is UTC:
            # A third faster than isoformat(" ", "microseconds")[:26], which formats the
            # offset only to cut it off: a derivation writes millions of these.
            return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return slow(value)

    return convert


def _date_text(slow: Processor) -> Processor:
    """SQLite's text for dates from one C call; anything else as ``slow`` does."""

    def convert(value: Any) -> Any:
        """The stored text of one value."""
        return value.isoformat() if type(value) is date else slow(value)

    return convert


# Each shortcut is used for a column only when it matches SQLAlchemy's own processor
# on these values (so a dialect or format they do not fit keeps SQLAlchemy's).
_SHORTCUTS: tuple[tuple[Callable[[Processor], Processor], tuple[Any, ...]], ...] = (
    (
        _datetime_text,
        (
            datetime(2026, 11, 23, 1, 2, 3, 456789, UTC),
            datetime(2026, 11, 23, tzinfo=UTC),
            datetime(999, 1, 2, 3, 4, 5, 6, UTC),
        ),
    ),
    (_date_text, (date(2026, 11, 23), date(999, 1, 2))),
    (utc_as_is, (datetime(2026, 11, 23, 1, 2, 3, 456789, UTC), datetime(999, 1, 2, tzinfo=UTC))),
)
