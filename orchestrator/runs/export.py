"""`export`: stream an export of the contract from the inventory to stdout or a file, atomically."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from rolecall.inventory.exports import COLUMNS, export_rows
from rolecall.inventory.store import Store
from rolecall.orchestrator.errors import UsageError
from rolecall.reports.tabular import write_rows


def export_to(store: Store, what: str, fmt: str, output: Path | None) -> int:
    """Write one export to output (or stdout); a file appears whole or not at all."""
    with store.read(f"export the {what}") as connection:
        rows = export_rows(connection, what)
        if output is None:
            return write_rows(rows, COLUMNS[what], fmt, sys.stdout)
        directory = output.parent if str(output.parent) else Path()
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                count = write_rows(rows, COLUMNS[what], fmt, handle)
            os.replace(temp, output)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return count
