"""CSV, JSON and JSON-lines writers for rows; CSV cells are safe to open in a spreadsheet.

Rows written to standard output are safe to show on a terminal too (rolecall.terminal_text).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rolecall.terminal_text import json_terminal_safe, terminal_safe

FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def neutralise(text: str) -> str:
    """Make a cell inert in a spreadsheet: a leading formula character gets a quote before it."""
    return "'" + text if text.startswith(FORMULA_LEAD) else text


def csv_cell(value: Any) -> str:
    """The CSV text of a value: lists ';'-joined, booleans lower-case, formulas neutralised."""
    if type(value) is str:
        # Most cells: inlined neutralise, as a report writes a million of them.
        return "'" + value if value.startswith(FORMULA_LEAD) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        value = ";".join(str(item) for item in value)
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    return neutralise("" if value is None else str(value))


def write_rows(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    out: TextIO,
    bom: bool = False,
) -> int:
    """Write rows to out in fmt (csv, json or jsonl), streaming; return how many were written.

    bom starts a CSV with a UTF-8 byte order mark, which spreadsheets need to read UTF-8.
    On standard output, CSV cells show control characters as escapes (a banner's ESC or
    newline neither reaches the terminal nor starts a line) and JSON escapes them.
    """
    shown = out is sys.stdout
    cell = _shown_cell if shown else csv_cell
    dump = _shown_json if shown else _json
    count = 0
    if fmt == "csv":
        if bom:
            out.write(BOM)
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row[column]) for column in columns])
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            out.write(dump(row) + "\n")
            count += 1
    elif fmt == "json":
        out.write("[")
        for row in rows:
            out.write(("\n  " if count == 0 else ",\n  ") + dump(row))
            count += 1
        out.write("\n]\n" if count else "]\n")
    else:
        raise ValueError(f"unknown format {fmt!r}: choose csv, json or jsonl")
    return count


def _json(row: dict[str, Any]) -> str:
    """A row as one line of JSON, non-ASCII text kept as it is."""
    return json.dumps(row, ensure_ascii=False)


def _shown_cell(value: Any) -> str:
    """A CSV cell for a terminal: control characters shown as escapes."""
    return terminal_safe(csv_cell(value))


def _shown_json(row: dict[str, Any]) -> str:
    """A row as one line of JSON for a terminal: every control character escaped."""
    return json_terminal_safe(_json(row))
