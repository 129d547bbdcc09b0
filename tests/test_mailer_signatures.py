"""Bulk-mailer signatures: the first one in order, found case-insensitively anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rolecall.inventory.matching.mailer_signatures import DEFAULT_SIGNATURES, matching_signature


def _first_in_order(user_agent: str, signatures: tuple[str, ...]) -> str | None:
    """The definition: the first non-empty signature whose casefold is in the agent's."""
    folded = user_agent.casefold()
    return next((s for s in signatures if s and s.casefold() in folded), None)


def test_default_signatures_are_found_in_any_case() -> None:
    assert matching_signature("the bat! (v9.4.2)", DEFAULT_SIGNATURES) == "The Bat!"
    assert matching_signature("X DARKMAILER 3", DEFAULT_SIGNATURES) == "DarkMailer"
    assert matching_signature("Microsoft Outlook 16.0", DEFAULT_SIGNATURES) is None
    assert matching_signature("", DEFAULT_SIGNATURES) is None


def test_first_signature_in_order_wins_not_the_leftmost_match() -> None:
    signatures = ("Mailer", "Bulk")
    assert matching_signature("Bulk Mailer 2", signatures) == "Mailer"


def test_regex_characters_in_signatures_are_literal() -> None:
    assert matching_signature("Sender (v1.*)", ("(v1.*)",)) == "(v1.*)"
    assert matching_signature("Sender v1 anything", ("(v1.*)",)) is None
    assert matching_signature("anything", ("", "thing")) == "thing"
    assert matching_signature("anything", ("",)) is None


# Mixed case, regex metacharacters and letters whose casefold is longer (ß -> ss).
TEXT = st.text(alphabet="abAB.*()|ßSs ẞ\\", max_size=12)


@given(TEXT, st.lists(TEXT, max_size=5).map(tuple))
def test_matches_the_definition(user_agent: str, signatures: tuple[str, ...]) -> None:
    assert matching_signature(user_agent, signatures) == _first_in_order(user_agent, signatures)
