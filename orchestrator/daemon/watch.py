"""Watched drop directories: which files are new captures or Zeek logs, and where done ones go."""

from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path

from rolecall.probes.passive.zeek.log_format import LOG_TYPES, log_type_of

DONE_DIR = "done"
FAILED_DIR = "failed"
PCAP_HEADS = frozenset(
    {
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x0a\x0d\x0d\x0a",
    }
)


def _head(path: Path) -> bytes:
    """The first four bytes of a file, or of its gzip content."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as unpacked:
                head = unpacked.read(4)
    except (OSError, EOFError, zlib.error):
        return b""
    return head


def kind_of(path: Path) -> str | None:
    """ "pcap" for a capture (by magic bytes), "zeek" for a known Zeek log name, else None."""
    if _head(path) in PCAP_HEADS:
        return "pcap"
    if log_type_of(path) in LOG_TYPES:
        return "zeek"
    return None


def ready_files(directory: Path, settle: float, now: float | None = None) -> list[tuple[str, Path]]:
    """(kind, path) of files in directory untouched for settle seconds, oldest first.

    A file still being written (modified within ``settle`` seconds) waits for the next look.
    """
    moment = time.time() if now is None else now
    found: list[tuple[float, str, Path]] = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
        except OSError:
            continue
        if not path.is_file() or path.name.startswith(".") or moment - stat.st_mtime < settle:
            continue
        kind = kind_of(path)
        if kind is not None:
            found.append((stat.st_mtime, kind, path))
    return [(kind, path) for _, kind, path in sorted(found)]


def set_aside(path: Path, folder: str) -> Path:
    """Move path into folder beside it (done/ or failed/) without overwriting; return where."""
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    number = 1
    while target.exists():
        target = target_dir / f"{path.name}.{number}"
        number += 1
    path.rename(target)
    return target
