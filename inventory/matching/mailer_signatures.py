"""Bulk and mass-mail client signatures, matched in X-Mailer / User-Agent headers."""

from __future__ import annotations

from typing import Final

DEFAULT_SIGNATURES: Final = (
    "The Bat!",
    "Dark Mailer",
    "DarkMailer",
    "Send-Safe",
    "Atomic Mail Sender",
    "ePochta Mailer",
    "Advanced Mass Sender",
    "Gammadyne Mailer",
    "SendBlaster",
    "MaxBulk Mailer",
    "Mailing List King",
    "Group Mail",
    "Turbo-Mailer",
    "Super Mailer",
    "Bulk Mailer",
    "Mass Mailer",
    "Aureate Group Mail",
    "Sendinbox",
)
"""Clients known for bulk mailing; config adds more (matched case-insensitively as substrings)."""


def matching_signature(user_agent: str, signatures: tuple[str, ...]) -> str | None:
    """Return the first signature found in a user agent (case-insensitive), or None."""
    folded = user_agent.casefold()
    for signature in signatures:
        if signature and signature.casefold() in folded:
            return signature
    return None
