"""Control characters made visible, for formats that have no escape for them (CEF, syslog SD)."""

from __future__ import annotations

import re
from typing import Final

CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _picture(match: re.Match[str]) -> str:
    """The Unicode control picture of a C0 control or DEL (NUL is ␀, ESC is ␛); else U+FFFD."""
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"


def visible(text: str, keep: str = "") -> str:
    """The text with every control character (but those in keep) shown as a visible symbol.

    C1 controls and lone surrogates (undecodable bytes kept by surrogateescape) become U+FFFD,
    so the result always encodes as UTF-8 and never drives a terminal.
    """
    if keep:
        return CONTROLS.sub(lambda m: m.group() if m.group() in keep else _picture(m), text)
    return CONTROLS.sub(_picture, text)
