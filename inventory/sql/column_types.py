"""Column types of the inventory that SQLAlchemy does not ship."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import types
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.operators import OperatorType

STORED_TEXT_LENGTH = len("2026-11-23 01:02:03.456789")
"""SQLite's text of a stored timestamp (SQLAlchemy's format, microseconds always written)."""


def utc_as_is(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A processor giving aware UTC datetimes as they are, anything else as ``slow`` does
    (PostgreSQL's driver reads and writes those; converting each to UTC again costs)."""

    def convert(value: Any) -> Any:
        """The value, untouched if it is an aware UTC datetime."""
        return value if type(value) is datetime and value.tzinfo is UTC else slow(value)

    return convert


class UTCDateTime(types.TypeDecorator[datetime]):
    """A timestamp stored with its time zone and always read back as an aware UTC datetime.

    SQLite keeps no zone: what it stores is UTC without an offset, and is read as UTC.
    """

    impl = types.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def __repr__(self) -> str:
        return "UTCDateTime()"

    def coerce_compared_value(self, op: OperatorType | None, value: Any) -> types.TypeEngine[Any]:
        """Compare with an interval as an interval, with anything else as a timestamp."""
        if isinstance(value, timedelta):
            return types.Interval()
        return self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """The value in UTC; a naive datetime is refused rather than guessed at."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"a datetime without a timezone cannot be stored: {value.isoformat()}")
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        """As process_result_value, but SQLite's text with the zone appended is parsed in one C
        call (building the naive value and then replacing its zone costs five times more),
        and PostgreSQL's values already in UTC are taken as they are."""
        slow = super().result_processor(dialect, coltype)
        if slow is None:
            return slow
        if dialect.name == "postgresql":
            # psycopg reads in the session's zone, UTC (see database.utc_session).
            return utc_as_is(slow)
        if dialect.name != "sqlite":
            return slow

        def process(value: Any) -> Any:
            """The stored text as an aware UTC datetime."""
            # Only the stored format, "YYYY-MM-DD HH:MM:SS.ffffff": a date alone with an
            # offset appended would parse as a naive datetime.
            if type(value) is str and len(value) == STORED_TEXT_LENGTH:
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass  # not the stored format after all: the general path
            return slow(value)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """The stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
