"""Where a command writes its output: a file that appears whole or not at all, or a stream."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rolecall.orchestrator.errors import UsageError

STDOUT = Path("-")


@contextmanager
def output_text(out: Path) -> Iterator[TextIO]:
    """A text file at out, whole when the block ends or not at all; - is stdout.

    An existing device or pipe (/dev/null, a FIFO) is written in place: replacing it
    with a regular file would break it for every other program. The folder must exist:
    a mistyped path is refused, not created.
    """
    if out == STDOUT:
        yield sys.stdout
        return
    if _is_stream(out):
        try:
            handle = out.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
        with handle:
            yield handle
        return
    directory = out.parent if str(out.parent) else Path()
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _is_stream(path: Path) -> bool:
    """Whether path names an existing character device, FIFO or socket."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
