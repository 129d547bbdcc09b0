"""A role's evidence list, extended as text at derivation time, is what JSON would give."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from rolecall.inventory.derivation.role_table import MAX_EVIDENCE, appended_evidence
from rolecall.inventory.findings import merged_evidence

PROOFS = st.builds(
    "{}:{}".format,
    st.sampled_from(["observation", "flow", "smtp", "socks", "role"]),
    st.integers(0, 40),
)
ODD = st.text(alphabet='ab"\\:, ', max_size=6)


def _as_json(stored: list[str], new: list[str]) -> str:
    """The evidence the plain JSON path writes."""
    return json.dumps(merged_evidence(stored, new)[:MAX_EVIDENCE])


@given(st.lists(PROOFS, max_size=25, unique=True), st.lists(PROOFS, max_size=25))
def test_appending_as_text_equals_json(stored: list[str], new: list[str]) -> None:
    stored = stored[:MAX_EVIDENCE]
    assert appended_evidence(json.dumps(stored), new) == _as_json(stored, new)


@given(st.lists(PROOFS, max_size=5, unique=True), st.lists(ODD, max_size=4))
def test_proofs_that_need_escaping_take_the_json_path(stored: list[str], new: list[str]) -> None:
    assert appended_evidence(json.dumps(stored), new) == _as_json(stored, new)


def test_a_full_list_is_left_as_it_is() -> None:
    full = json.dumps([f"observation:{n}" for n in range(MAX_EVIDENCE)])
    assert appended_evidence(full, ["flow:1"]) is full
