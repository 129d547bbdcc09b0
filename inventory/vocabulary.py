"""Words the inventory's commands accept, importable without loading the database layer."""

from __future__ import annotations

from typing import Final

STATUSES: Final = ("open", "resolved", "acknowledged")
"""What a finding can be."""
METRICS: Final = ("smtp_clients", "smtp_connections", "fw_smtp_denies")
"""The daily series the history keeps."""
