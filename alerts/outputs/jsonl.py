"""The jsonl output: one ECS JSON document per line in a file, rotated by size, kept whole.

Each batch is written with one write() of whole lines and made durable (fsync) before the
cursor moves. Rotation renames the full file to NAME.1 (NAME.1 to NAME.2, ...) and opens
a new one, so a reader tailing the file by name sees the old file end at a line's end and
the new one begin with a whole line: never half an event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats.ecs import ecs_document
from rolecall.alerts.outputs.common import AlertOutput, Delivered, DeliveryError, OutputSettings


class Settings(OutputSettings):
    """An `[[alerts]]` entry of type "jsonl"."""

    type: Literal["jsonl"]
    path: str = Field(min_length=1)
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    """Rotate before a write would take the file past this size."""
    keep: int = Field(default=5, ge=0, le=1000)
    """Rotated files kept (NAME.1 newest ... NAME.KEEP); 0: the full file is removed."""


def event_line(event: AlertEvent) -> bytes:
    """One event as one line of JSON: newlines and control characters stay escaped inside it."""
    # json.dumps escapes every control character (U+0000-U+001F) and the line ends only
    # where this adds a newline; ensure_ascii also keeps U+2028/U+2029 off raw readers.
    return (
        json.dumps(ecs_document(event), ensure_ascii=True, separators=(",", ":")).encode("ascii")
        + b"\n"
    )


class JsonlOutput:
    """Appends events to a file, rotating it by size."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = Path(settings.path).expanduser()
        self._descriptor: int | None = None

    def _open(self) -> int:
        """The file's descriptor, opened for appending (owner-only on creation)."""
        if self._descriptor is None:
            try:
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise DeliveryError(
                    f"alerts {self._settings.name}: cannot open {self._path}: {exc.strerror}"
                ) from None
        return self._descriptor

    def _rotate(self) -> None:
        """Move the full file aside (NAME.1, older ones up by one) and start a new one."""
        self.close()
        keep = self._settings.keep
        if keep == 0:
            self._path.unlink(missing_ok=True)
        else:
            for number in range(keep - 1, 0, -1):
                older = self._path.with_name(f"{self._path.name}.{number}")
                if older.exists():
                    older.replace(self._path.with_name(f"{self._path.name}.{number + 1}"))
            self._path.replace(self._path.with_name(f"{self._path.name}.1"))
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make the renames durable."""
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def deliver(self, events: Sequence[AlertEvent]) -> Delivered:
        """Append the events as lines, rotating between lines so no file outgrows max_bytes.

        A single event larger than max_bytes gets a file of its own.
        """
        lines = [event_line(event) for event in events]
        done = 0
        try:
            while done < len(lines):
                descriptor = self._open()
                size = os.fstat(descriptor).st_size
                head = self._after_cut_line(descriptor)
                chunk = self._fitting(lines[done:], size + len(head))
                if not chunk:
                    self._rotate()
                    continue
                self._write(descriptor, head + b"".join(chunk))
                done += len(chunk)
                if done < len(lines):
                    self._rotate()
        except DeliveryError as exc:
            return Delivered(done, str(exc))
        except OSError as exc:
            self.close()
            where = f"alerts {self._settings.name}: cannot write {self._path}"
            return Delivered(done, f"{where}: {exc.strerror or exc}")
        return Delivered(done)

    def _fitting(self, lines: Sequence[bytes], size: int) -> list[bytes]:
        """The leading lines that fit in a file of this size (one at least, if it is empty)."""
        chunk: list[bytes] = []
        for line in lines:
            if (chunk or size) and size + len(line) > self._settings.max_bytes:
                break
            chunk.append(line)
            size += len(line)
        return chunk

    @staticmethod
    def _write(descriptor: int, data: bytes) -> None:
        """Write all of data and make it durable before the cursor moves past it."""
        written = 0
        while written < len(data):
            written += os.write(descriptor, data[written:])
        os.fsync(descriptor)

    @staticmethod
    def _after_cut_line(descriptor: int) -> bytes:
        """A newline if the file ends inside a line (a write cut short by a full disk).

        The events of a cut write are written again whole; the newline keeps the cut
        line from running into them, so a reader sees one damaged line, never two merged.
        """
        size = os.fstat(descriptor).st_size
        return b"\n" if size and os.pread(descriptor, 1, size - 1) != b"\n" else b""

    def close(self) -> None:
        """Close the file."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def open_output(settings: Settings) -> AlertOutput:
    """A jsonl output for these settings."""
    return JsonlOutput(settings)
