"""`--where` expressions: simple comparisons joined by `and`, e.g. `src_country != US`."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from rolecall.reports.errors import ReportInputError

OPERATORS = ("==", "=", "!=", "~", "!~")
_TOKEN = re.compile(
    r"\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<op>==|!=|!~|=|~)|(?P<word>[^\s=!~\"']+))"
)


@dataclass(frozen=True)
class Condition:
    """One comparison: field, operator, value (compared case-insensitively)."""

    field: str
    op: str
    value: str

    def holds(self, values: Sequence[str]) -> bool:
        """Whether the comparison holds for a field's values (a list field: any of them)."""
        wanted = self.value.casefold()
        folded = [value.casefold() for value in values] or [""]
        if self.op in ("=", "=="):
            return wanted in folded
        if self.op == "!=":
            return wanted not in folded
        if self.op == "~":
            return any(wanted in value for value in folded)
        return not any(wanted in value for value in folded)


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split an expression into (kind, text) tokens: word, quoted or op."""
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ReportInputError(
                f"--where: cannot read {text[position:].strip()!r}; write comparisons like"
                " 'src_country != US and rcpt ~ example.com'"
            )
        kind = match.lastgroup or "word"
        tokens.append(("quoted" if kind in ("dq", "sq") else kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_where(text: str, fields: Collection[str]) -> list[Condition]:
    """Parse an expression over the given field names; a bad one is one clear sentence."""
    tokens = _tokens(text)
    if not tokens:
        return []
    conditions: list[Condition] = []
    index = 0
    while True:
        part = tokens[index : index + 3]
        if len(part) < 3 or part[1][0] != "op" or part[0][0] != "word" or part[2][0] == "op":
            shown = " ".join(token[1] for token in part) or "the end"
            raise ReportInputError(
                f"--where: expected FIELD OP VALUE (OP one of {', '.join(OPERATORS)}) at {shown!r}"
            )
        field = part[0][1]
        if field not in fields:
            raise ReportInputError(
                f"--where: unknown field {field!r}; fields are {', '.join(sorted(fields))}"
            )
        conditions.append(Condition(field, part[1][1], part[2][1]))
        index += 3
        if index == len(tokens):
            return conditions
        if tokens[index] != ("word", "and") and tokens[index][1].casefold() != "and":
            raise ReportInputError(
                f"--where: expected 'and' between comparisons, found {tokens[index][1]!r}"
            )
        index += 1
        if index == len(tokens):
            raise ReportInputError("--where: the expression ends with 'and'")


def matches(conditions: Sequence[Condition], row: Mapping[str, Sequence[str]]) -> bool:
    """Whether a row (field -> values) satisfies every condition."""
    return all(condition.holds(row[condition.field]) for condition in conditions)
