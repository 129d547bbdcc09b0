"""Bulk and mass-mail client signatures, matched in X-Mailer / User-Agent headers."""

from __future__ import annotations

import re
from functools import lru_cache
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


@lru_cache(maxsize=8)
def _any_of(signatures: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern that finds any of the (non-empty) signatures in a casefolded text."""
    folded = [re.escape(signature.casefold()) for signature in signatures if signature]
    return re.compile("|".join(folded)) if folded else None


def matching_signature(user_agent: str, signatures: tuple[str, ...]) -> str | None:
    """Return the first signature found in a user agent (case-insensitive), or None."""
    folded = user_agent.casefold()
    # One search rules out almost every agent (it runs on every mail transaction); the
    # rare match is then named by the first signature in order, as the list promises.
    pattern = _any_of(signatures)
    if pattern is None or pattern.search(folded) is None:
        return None
    for signature in signatures:
        if signature and signature.casefold() in folded:
            return signature
    return None
