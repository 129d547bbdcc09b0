"""How listings print: text for people, JSON (one document) or JSON lines for programs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

import typer

from rolecall.reports.tabular import write_rows


class ListFormat(StrEnum):
    """A listing's output formats."""

    text = "text"
    json = "json"
    jsonl = "jsonl"


FormatOption = Annotated[
    ListFormat,
    typer.Option("--format", help="text, json (one document) or jsonl (one object per line)."),
]


def print_rows(rows: Iterable[dict[str, Any]], fmt: ListFormat) -> int:
    """Print rows as one JSON array or as JSON lines, values keeping their types; the count."""
    if fmt is ListFormat.text:
        raise ValueError("text listings print themselves")
    return write_rows(rows, (), fmt.value, sys.stdout)
