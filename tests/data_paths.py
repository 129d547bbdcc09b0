"""Where the tests find the files they read: all inside the repository, computed here only."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The repository's root (the checkout, not an installed copy)."""

README = REPO / "README.md"
CONTRACT = REPO / "docs" / "contract.md"
CONFIG_EXAMPLE = REPO / "config.example.toml"

DATA = Path(__file__).resolve().parent / "data"
"""The tests' own data files."""

CONFORMANCE = DATA / "conformance" / "zeek"
"""Zeek's captures with the logs Zeek wrote for them (one folder per case; COPYING.zeek)."""

CHUNKING = DATA / "conformance" / "zeek-chunking"
"""Zeek's CHUNKING (BDAT) cases, kept apart from those every-case tests take."""

RELEASE_0_1_0_DB = DATA / "schedules" / "release-0.1.0.db"
"""An inventory made by rolecall 0.1.0 with pickled APScheduler schedules (see its README)."""
