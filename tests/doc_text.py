"""Reading the README and the contract as the docs tests need: sections, code lines, words."""

from __future__ import annotations

import re

NOT_YET_BUILT = "not yet built"
"""How the contract marks what it promises and the code does not offer yet."""


def section(text: str, heading: str) -> str:
    """The text of the `## heading...` section, up to the next `## ` heading ("" if none)."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def code_lines(text: str) -> list[str]:
    """The lines of the code blocks (indented four spaces, or fenced), stripped."""
    lines = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
    return lines


def has_word(text: str, word: str) -> bool:
    """Whether text holds word whole, not inside a longer name (as in "smtp-open-relay")."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def bullets(text: str) -> dict[str, str]:
    """Top-level `- name...` list items by their leading name, with their continuation lines."""
    items: dict[str, str] = {}
    for item in re.findall(r"^- .*?(?=^- |^\S|\Z)", text, re.M | re.S):
        name = re.match(r"- ([a-z][a-z0-9-]*)", item)
        if name:
            items[name.group(1)] = item
    return items


def listed_words(sentence: str) -> dict[str, str]:
    """A comma-separated list ("a, b (note), c") as word -> its parenthesised note."""
    items = {}
    for item in re.split(r",(?![^(]*\))", sentence):
        match = re.fullmatch(r"\s*([a-z0-9-]+)\s*(?:\((.*)\))?\s*", item, re.S)
        if match:
            items[match.group(1)] = match.group(2) or ""
    return items
