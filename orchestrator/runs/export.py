"""`export`: stream an export of the contract from the inventory to stdout or a file, atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from rolecall.inventory.exports import COLUMNS, export_rows
from rolecall.inventory.store import Store
from rolecall.orchestrator.output_file import output_text
from rolecall.reports.tabular import write_rows


def export_to(store: Store, what: str, fmt: str, output: Path | None) -> int:
    """Write one export to output (or stdout); a file appears whole or not at all."""
    with store.read(f"export the {what}") as connection:
        rows = export_rows(connection, what)
        if output is None:
            return write_rows(rows, COLUMNS[what], fmt, sys.stdout)
        with output_text(output) as handle:
            return write_rows(rows, COLUMNS[what], fmt, handle)
