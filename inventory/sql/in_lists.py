"""Long value lists bound into SQL ``IN (...)``, cut into slices every database accepts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

T = TypeVar("T")
IN_LIST_SIZE: Final = 500
"""Values bound per IN list (older SQLite builds allow 999 parameters a statement)."""


def in_slices(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most IN_LIST_SIZE items."""
    for start in range(0, len(items), IN_LIST_SIZE):
        yield items[start : start + IN_LIST_SIZE]
