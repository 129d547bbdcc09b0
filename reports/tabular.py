"""CSV, JSON and JSON-lines writers for rows; CSV cells are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def terminal_safe(text: str) -> str:
    """Text safe to print to a terminal: control characters (escape sequences) shown as \\xNN."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda match: f"\\x{ord(match.group()):02x}", text)


def neutralise(text: str) -> str:
    """Make a cell inert in a spreadsheet: a leading formula character gets a quote before it."""
    return "'" + text if text.startswith(FORMULA_LEAD) else text


def csv_cell(value: Any) -> str:
    """The CSV text of a value: lists ';'-joined, booleans lower-case, formulas neutralised."""
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
    """
    count = 0
    if fmt == "csv":
        if bom:
            out.write(BOM)
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(row[column]) for column in columns])
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    elif fmt == "json":
        out.write("[")
        for row in rows:
            out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
            count += 1
        out.write("\n]\n" if count else "]\n")
    else:
        raise ValueError(f"unknown format {fmt!r}: choose csv, json or jsonl")
    return count
