"""Zeek's log formats, read as a stream: TSV with its # headers, and JSON lines.

This module knows the file formats and nothing about what the logs mean
(``rolecall.probes.passive.zeek.records`` maps them to records). :func:`read_log` hands each
data line, split into raw TSV-style strings, to the handler its caller chose
for the header in force (a :class:`Block`: #fields, #set_separator,
#empty_field, #unset_field, #path; a #separator line starts a new header and a
new #fields line is followed). JSON values are re-encoded the way Zeek's TSV
writer would have written them (sets joined with the set separator, ``-`` for
unset, ``(empty)`` for empty), so one decoding path serves both formats.

Files may be gzip-compressed (detected by their magic bytes, whatever the
name). Reading is by chunks split at once; a line longer than its cap is
skipped with a warning, never accumulated. :func:`zeek_files` finds the logs
in Zeek's archive folders.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, Generic, TypeVar

from rolecall.probes.errors import InputError
from rolecall.probes.field_values import count, port_number
from rolecall.probes.records import ReadWarning

LOG_TYPES = frozenset(
    ("conn", "smtp", "socks", "software", "known_services", "known_hosts", "dns", "http", "ssl")
)
"""The Zeek log streams rolecall reads."""

DEFAULT_MAX_LINE = 65536
_CHUNK = 1 << 16  # characters read (and split) at a time
_GZIP_MAGIC = b"\x1f\x8b"
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
# conn.log, conn.log.gz, conn.00:00:00-01:00:00.log.gz, conn.2026-11-23-10-00-00.log
_LOG_NAME = re.compile(r"^([a-z_]+)(?:\.[^/]*)?\.log(?:\.gz)?$")


@dataclass(frozen=True, slots=True)
class Block:
    """The header in force for the lines that follow it."""

    path: str
    fields: tuple[str, ...]
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"

    def text(self, raw: str) -> str:
        """Decode one scalar field: unset and empty become ""."""
        if raw in (self.unset_field, self.empty_field):
            return ""
        return unescape(raw) if "\\" in raw else raw

    def number(self, raw: str, field: str = "count") -> int:
        """Decode a count field; unset or empty is 0 (ValueError if not a count the store holds)."""
        if raw in (self.unset_field, self.empty_field):
            return 0
        return count(raw, field)

    def port(self, raw: str, field: str) -> int:
        """Decode a port field; unset or empty is 0 (ValueError if not from 0 to 65535)."""
        if raw in (self.unset_field, self.empty_field):
            return 0
        return port_number(raw, field)

    def items(self, raw: str) -> tuple[str, ...]:
        """Decode a set or vector field into its elements, in log order."""
        if raw in (self.unset_field, self.empty_field):
            return ()
        if "\\" not in raw:
            return tuple(raw.split(self.set_separator))
        return tuple(unescape(part) for part in raw.split(self.set_separator))


T = TypeVar("T")
Row = tuple[str, ...]
Picker = Callable[[list[str]], Row]
LineHandler = Callable[[list[str]], Sequence[T]]
"""Turns one split line (plus a trailing unset marker) into items; ValueError if it is bad."""
Projector = Callable[[Block], LineHandler[T] | str]
"""Given a header, returns the handler for the lines under it, or why they cannot be read."""


def unescape(raw: str) -> str:
    """Decode Zeek's \\xNN escapes (bytes, so multi-byte UTF-8 comes back whole)."""
    data = raw.encode("utf-8", "surrogateescape")
    data = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    return data.decode("utf-8", "replace")


def log_type_of(path: Path) -> str:
    """The stream name a file's name says it holds ("conn" for conn.01:00:00-02:00:00.log.gz)."""
    match = _LOG_NAME.match(path.name)
    return match.group(1) if match else ""


def picker(block: Block, wanted: Sequence[str]) -> Picker:
    """Return a function picking ``wanted`` from a split line; a missing field reads as unset.

    The caller appends the unset marker to each split line, so a field the
    header lacks points at that last element.
    """
    index = {name: i for i, name in enumerate(block.fields)}
    missing = len(block.fields)
    positions = [index.get(name, missing) for name in wanted]
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    return itemgetter(*positions)


def open_text(path: Path) -> IO[str]:
    """Open a log, gzip or plain, as text (bad bytes replaced); InputError if unreadable."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes the wrapper
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        head = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
        binary = gzip.GzipFile(fileobj=raw) if head == _GZIP_MAGIC else raw
    except OSError as exc:
        raw.close()
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="\n")


def read_lines(path: Path, max_line: int) -> Iterator[tuple[int, str] | ReadWarning]:
    """Yield (line number, line) for each non-empty line; overlong lines and damage are warnings."""
    for item in read_batches(path, max_line):
        if isinstance(item, ReadWarning):
            yield item
            continue
        first, lines = item
        for number, line in enumerate(lines, first):
            if line:
                yield number, line


def read_batches(path: Path, max_line: int) -> Iterator[tuple[int, list[str]] | ReadWarning]:
    """Yield (number of the first line, lines without newlines), a chunk of the file at a time.

    Reading a chunk and splitting it in one call is what makes this fast. A
    line longer than ``max_line`` is reported and comes out as "" (so numbers
    stay right); what is held never exceeds one chunk plus ``max_line``.
    """
    stream = open_text(path)
    number, tail, overlong = 1, "", False
    try:
        with stream:
            while chunk := stream.read(_CHUNK):
                lines = chunk.split("\n")
                if overlong and len(lines) == 1:
                    continue  # still inside the line already reported
                lines[0] = "" if overlong else tail + lines[0]
                overlong = False
                tail = lines.pop()
                if len(tail) > max_line:
                    yield _too_long(path, number + len(lines), max_line)
                    tail, overlong = "", True
                if lines and max(map(len, lines)) > max_line:
                    yield from _blank_long(path, number, lines, max_line)
                if "\r" in chunk:
                    lines = [line.rstrip("\r") for line in lines]
                yield number, lines
                number += len(lines)
            if tail or overlong:
                yield number, [tail.rstrip("\r")]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield ReadWarning(f"{path}:{number}", f"compressed data is damaged ({exc}); rest skipped")
    except OSError as exc:
        raise InputError(f"Cannot read {path} after line {number}: {exc.strerror or exc}.") from exc


def _too_long(path: Path, number: int, max_line: int) -> ReadWarning:
    """The warning for a line over the cap."""
    return ReadWarning(f"{path}:{number}", f"line longer than {max_line} skipped")


def _blank_long(path: Path, first: int, lines: list[str], max_line: int) -> Iterator[ReadWarning]:
    """Blank out (and report) the complete lines of a chunk that are over the cap."""
    for index, line in enumerate(lines):
        if len(line) > max_line:
            lines[index] = ""
            yield _too_long(path, first + index, max_line)


def _separator(value: str) -> str:
    """Decode the #separator header's value (usually the escape \\x09)."""
    return unescape(value) if value.startswith("\\x") else value


class _Header:
    """The header lines read so far in the current TSV block."""

    def __init__(self, default_path: str) -> None:
        self.default_path = default_path
        self.separator = "\t"
        self.meta: dict[str, str] = {}
        self.fields: tuple[str, ...] = ()

    def take(self, line: str) -> str | None:
        """Absorb one '#' line; return a problem description if it is malformed."""
        if line.startswith("#separator"):
            self.meta, self.fields = {}, ()
            value = line[len("#separator") :].strip(" ")
            if not value:
                return "#separator header has no value"
            self.separator = _separator(value)
            return None
        name, _, value = line[1:].partition(self.separator)
        if name == "fields":
            self.fields = tuple(value.split(self.separator)) if value else ()
            return None if self.fields else "#fields header names no fields"
        if name == "types":
            if self.fields and len(value.split(self.separator)) != len(self.fields):
                return "#types header does not match #fields"
        else:
            self.meta[name] = value
        return None

    def block(self) -> Block:
        """The block these headers describe."""
        return Block(
            path=self.meta.get("path", self.default_path),
            fields=self.fields,
            set_separator=self.meta.get("set_separator", ","),
            empty_field=self.meta.get("empty_field", "(empty)"),
            unset_field=self.meta.get("unset_field", "-"),
        )


def read_log(
    path: Path, project: Projector[T], max_line: int = DEFAULT_MAX_LINE
) -> Iterator[T | ReadWarning]:
    """Yield what ``project``'s handlers make of each data line of a TSV or JSON-lines Zeek log.

    Damaged lines (and a handler's ValueError) become warnings naming file:line.
    """
    return _Lines(path, project).read(max_line)


class _Lines(Generic[T]):
    """The state of one pass over a log: the header in force and the handler for its lines."""

    def __init__(self, path: Path, project: Projector[T]) -> None:
        self.path = path
        self.project = project
        self.header = _Header(log_type_of(path))
        self.block: Block | None = None
        self.handle: LineHandler[T] | str = ""
        self.json_blocks: dict[tuple[str, ...], tuple[Block, LineHandler[T] | str]] = {}
        self.headless = 0
        self.unset = "-"

    def read(self, max_line: int) -> Iterator[T | ReadWarning]:
        """Yield items and warnings for the whole file."""
        for batch in read_batches(self.path, max_line):
            if isinstance(batch, ReadWarning):
                yield batch
                continue
            first, lines = batch
            yield from self.lines(first, lines)
        if self.headless > 1:
            yield ReadWarning(f"{self.path}", f"{self.headless} lines without #fields skipped")

    def lines(self, number: int, lines: list[str]) -> Iterator[T | ReadWarning]:
        """Yield items and warnings for a batch of lines, the first of them numbered ``number``."""
        number -= 1
        block, handle, separator, width = self.state()
        for line in lines:
            number += 1
            if not line:
                continue
            if line[0] == "#":
                yield from self.header_line(number, line)
                block, handle, separator, width = self.state()
            elif handle is not None:
                # the hot path, inline: split once, hand the fields over
                values = line.split(separator)
                if len(values) != width:
                    yield self.mismatch(number, len(values), width)
                    continue
                values.append(self.unset)
                try:
                    items = handle(values)
                except (ValueError, OverflowError) as exc:
                    yield self.bad_line(number, block, exc)
                    continue
                if items:
                    yield from items
            elif block is not None:
                continue  # a header whose lines cannot be read, already reported
            elif line[0] in "{[":
                yield from self.json_line(number, line)
            else:
                self.headless += 1
                if self.headless == 1:
                    yield ReadWarning(f"{self.path}:{number}", "data before any #fields skipped")

    def state(self) -> tuple[Block | None, LineHandler[T] | None, str, int]:
        """The header in force, its handler (None if none or refused), separator and width."""
        handle = None if isinstance(self.handle, str) else self.handle
        width = len(self.block.fields) if self.block else 0
        self.unset = self.block.unset_field if self.block else "-"
        return self.block, handle, self.header.separator, width

    def header_line(self, number: int, line: str) -> Iterator[ReadWarning]:
        """Take a '#' line; when the fields change, find the handler for the lines after."""
        problem = self.header.take(line)
        if problem:
            yield ReadWarning(f"{self.path}:{number}", problem)
        if self.header.fields and self.header.block() != self.block:
            self.block = self.header.block()
            self.handle = self.project(self.block)
            if isinstance(self.handle, str):
                yield ReadWarning(f"{self.path}:{number}", f"{self.handle}; lines skipped")

    def mismatch(self, number: int, found: int, expected: int) -> ReadWarning:
        """The warning for a line whose field count does not match its header."""
        return ReadWarning(
            f"{self.path}:{number}", f"line has {found} fields, the #fields header names {expected}"
        )

    def bad_line(self, number: int, block: Block | None, exc: Exception) -> ReadWarning:
        """The warning for a line whose values a handler refused."""
        kind = block.path if block else "log"
        return ReadWarning(f"{self.path}:{number}", f"{kind} line skipped: {exc}")

    def json_line(self, number: int, line: str) -> Iterator[T | ReadWarning]:
        """Decode one JSON line into the raw fields a TSV line would give, and hand them over."""
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield ReadWarning(f"{self.path}:{number}", f"not valid JSON ({exc})")
            return
        except RecursionError:  # the decoder's own bound on nesting, a line's length the other
            yield ReadWarning(f"{self.path}:{number}", "JSON nested too deep; line skipped")
            return
        if not isinstance(obj, dict):
            yield ReadWarning(f"{self.path}:{number}", "JSON line is not an object")
            return
        fields = tuple(obj)
        cached = self.json_blocks.get(fields)
        if cached is None:
            if len(self.json_blocks) > 64:  # key order may vary without bound: keep it small
                self.json_blocks.clear()
            block = Block(path=str(obj.get("_path") or log_type_of(self.path)), fields=fields)
            cached = self.json_blocks[fields] = (block, self.project(block))
            if isinstance(cached[1], str):  # said once per set of keys, not once per line
                yield ReadWarning(f"{self.path}:{number}", f"{cached[1]}; such lines skipped")
        block, handle = cached
        if isinstance(handle, str):
            return
        values = [_tsv_value(value, block) for value in obj.values()]
        values.append(block.unset_field)
        try:
            yield from handle(values)
        except (ValueError, OverflowError) as exc:
            yield self.bad_line(number, block, exc)


def _tsv_value(value: object, block: Block) -> str:
    """Encode a JSON value as Zeek's TSV writer would."""
    if isinstance(value, list):
        joined = block.set_separator.join(_element(v, block) for v in value)
        return joined if value else block.empty_field
    if isinstance(value, str):
        text = value.replace("\\", "\\x5c")
        if text in (block.unset_field, block.empty_field):
            text = f"\\x{ord(text[0]):02x}{text[1:]}"
        return text or block.empty_field
    if isinstance(value, bool):
        return "T" if value else "F"
    return block.unset_field if value is None else repr(value)


def _element(value: object, block: Block) -> str:
    """Encode one element of a JSON list as a TSV set element."""
    text = value.replace("\\", "\\x5c") if isinstance(value, str) else _tsv_value(value, block)
    return text.replace(block.set_separator, f"\\x{ord(block.set_separator[0]):02x}")


def zeek_files(paths: Sequence[Path]) -> list[Path]:
    """Expand files and log directories into the known Zeek logs they hold, in a stable order.

    Directories are searched through (dated archive folders, rotated and
    gzip'd logs) for the log types in ``LOG_TYPES``, sorted by path; a file
    named on its own is taken whatever its name (its #path says what it is).
    Each file comes once. InputError if a path does not exist or cannot be read.
    """
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise InputError(f"Cannot read {path}: no such file or directory.")
        if not os.access(path, os.R_OK):
            raise InputError(f"Cannot read {path}: permission denied.")
        if path.is_dir():
            for log in _logs_under(path):
                found.setdefault(log, None)
        else:
            found.setdefault(path, None)
    return list(found)


def _logs_under(root: Path) -> list[Path]:
    """Known Zeek logs anywhere under ``root`` (dated archive folders too), sorted by path."""

    def fail(exc: OSError) -> None:
        raise InputError(f"Cannot read {exc.filename or root}: {exc.strerror or exc}.")

    logs = []
    for folder, _dirs, names in os.walk(root, onerror=fail):
        for name in names:
            if log_type_of(Path(name)) in LOG_TYPES:
                logs.append(Path(folder) / name)
    return sorted(logs, key=lambda p: p.parts)
