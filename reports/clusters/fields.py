"""The fields mail can be clustered on, by name, importable without the database layer."""

from __future__ import annotations

from typing import Final

FIELD_NAMES: Final = (
    "subject",
    "mail_from",
    "rcpt",
    "client",
    "server",
    "user_agent",
    "helo",
    "src_country",
    "src_asn",
    "src_org",
    "src_prefix",
)
"""What ``clusters.view.FIELDS`` computes, in its order (a test holds the two together)."""
