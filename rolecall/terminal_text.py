"""Text from input made safe to show on a terminal or in a log line, as text or as JSON.

Safe means that every character a terminal would act on or that would hide or reorder what
is shown becomes a visible escape: C0 and C1 controls (so ESC, BEL, DEL, CSI, CR and LF:
no escape sequence and no forged second line), line and paragraph separators, bidi and
other format characters, and lone surrogates (bytes that were not UTF-8). Which characters
these are is Python's Unicode database's answer to ``str.isprintable``; spaces stay spaces.
"""

from __future__ import annotations

import unicodedata

# Lone surrogates are bytes that were not UTF-8 (decoded with surrogateescape): shown as the byte.
_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)


def _shown(char: str) -> bool:
    """Whether a character may be shown as itself: printable, or a space of any width."""
    return char.isprintable() or unicodedata.category(char) == "Zs"


def _escape(char: str) -> str:
    """A character as an escape a person can read: \\xNN, \\uNNNN or \\UNNNNNNNN."""
    point = ord(char)
    if point in _SURROGATE_ESCAPES:
        return f"\\x{point - 0xDC00:02x}"
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def terminal_safe(text: str) -> str:
    """The text on one line with nothing a terminal acts on: such characters shown as escapes."""
    if text.isprintable():
        return text
    return "".join(char if _shown(char) else _escape(char) for char in text)


def json_terminal_safe(document: str) -> str:
    """JSON text with the characters JSON leaves raw (DEL, C1, bidi...) as \\uNNNN escapes.

    json.dumps escapes C0 controls itself; the result is the same JSON value, safe to print.
    """
    if document.isprintable():
        return document
    return "".join(
        char if _shown(char) or char == "\n" else _json_escape(char) for char in document
    )


def _json_escape(char: str) -> str:
    """A character as JSON's \\uNNNN escape (two, a surrogate pair, beyond the first plane)."""
    point = ord(char)
    if point < 0x10000:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"
