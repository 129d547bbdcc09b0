"""A reader run in a second process, its items sent back in batches through a pipe.

Parsing a large log or capture takes one core; storing what it yields takes another. The
producer runs in a fresh interpreter (a subprocess: nothing inherited from the
caller, no open database, no threads, and no re-import of the caller's main
module as multiprocessing's spawn would do) and its items come back in order,
a pickled batch at a time, so the caller stores one batch while the next is
read. At most ``AHEAD`` batches wait in flight, which keeps memory bounded
however far ahead the reader could run. Records are pickled as their class and a
tuple of their fields (``record_reducers``), not through the dataclass's own state
methods, which cost several times as much on both sides.
"""

from __future__ import annotations

import copyreg
import dataclasses
import gc
import io
import operator
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import cache
from typing import IO, Any, TypeVar, get_args

from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.records import Item

T = TypeVar("T")
BATCH = 4096
"""Items per message: large enough that a message costs little, small enough to pipeline."""
BATCH_WAIT = 0.25
"""Seconds an item may wait for its batch to fill: a reader whose records are sparse (a
capture) still hands them on soon, and the caller, which takes Ctrl-C between items,
stays responsive."""
AHEAD = 128
"""Messages the worker may have ready before the caller takes them (at most ~30 MiB).

Enough for a whole day's flows handed out at once (see ``rolecall.probes.passive.zeek.flows``),
so that the reader goes on while the caller stores them.
"""
_SERVE = "from rolecall.probes.passive.worker import serve; serve()"


def items_in_worker(produce: Callable[[], Iterable[T]], what: str) -> Iterator[T]:
    """Yield what ``produce`` yields, computed in a second process started at the first item.

    ``produce`` must be picklable (a module-level function or a partial of one).
    An InputError in the worker is raised here with its message; a worker that
    fails otherwise or dies raises ProbeError naming ``what``. Closing the
    iterator early stops the worker.
    """
    worker = _start(produce, what)
    try:
        yield from _received(_output(worker), what, worker)
    finally:
        _stop(worker)


class WorkerItems(Iterator[T]):
    """What ``produce`` yields, computed in a second process that starts at once.

    Starting before the first item is asked for lets the caller prepare (load its
    modules, open its store) while the file is already being read. Errors are as
    for ``items_in_worker``; ``close()`` stops the worker, whether read or not.
    """

    def __init__(self, produce: Callable[[], Iterable[T]], what: str) -> None:
        """Start the worker and hand it the producer."""
        self._worker = _start(produce, what)
        self._items: Generator[T, None, None] = _received(_output(self._worker), what, self._worker)

    def __next__(self) -> T:
        """The next item the worker sent."""
        return next(self._items)

    def close(self) -> None:
        """Stop reading and end the worker if it still runs."""
        self._items.close()
        _stop(self._worker)

    def __del__(self) -> None:
        """A worker left unread is not left running."""
        if hasattr(self, "_items"):
            self.close()


def _start(produce: Callable[[], Iterable[object]], what: str) -> subprocess.Popen[bytes]:
    """Start a worker and hand it the producer; nothing is left running if that fails."""
    path = os.pathsep.join(entry for entry in sys.path if entry)
    worker = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path},
        start_new_session=True,  # a terminal's interrupt is the caller's to handle
    )
    try:
        if worker.stdin is None:
            raise ProbeError(f"Cannot start a reader process for {what}.")
        with worker.stdin:
            pickle.dump(produce, worker.stdin)
    except OSError:
        pass  # the worker is gone already: reading says so
    except BaseException:
        _stop(worker)
        raise
    return worker


def _output(worker: subprocess.Popen[bytes]) -> IO[bytes]:
    """The pipe a worker's messages come through."""
    if worker.stdout is None:
        raise ProbeError("A reader process has no output pipe.")
    return worker.stdout


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Close a worker's pipe and end it if it still runs (may be called more than once)."""
    if worker.stdout is not None:
        worker.stdout.close()
    if worker.poll() is None:
        worker.kill()
    worker.wait()


def _received(
    stream: IO[bytes], what: str, worker: subprocess.Popen[bytes]
) -> Generator[T, None, None]:
    """Yield the items of each batch the worker sends until it says it is done."""
    while True:
        try:
            kind, payload = pickle.load(stream)  # noqa: S301 - our own child's output
        except (EOFError, pickle.UnpicklingError):
            raise ProbeError(
                f"The reader process for {what} ended unexpectedly (exit status {worker.wait()})."
            ) from None
        if kind == "items":
            yield from payload
            continue
        worker.wait()  # its last message: the worker is ending, reap it now
        if kind == "input-error":
            raise InputError(payload)
        if kind == "failed":
            raise ProbeError(f"The reader process for {what} failed: {payload}.")
        return


def serve() -> None:
    """The worker's side: read the producer from stdin, send its items to stdout in batches."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the stream
    produce = pickle.load(sys.stdin.buffer)  # noqa: S301 - sent by our parent
    # The reader allocates millions of short-lived objects; the modules loaded by now
    # live as long as the process, so the collector need not walk them again and again.
    gc.freeze()
    with out:
        _serve(produce, out)


def _serve(produce: Callable[[], Iterable[object]], out: IO[bytes]) -> None:
    """Run the producer; send its items, then how it ended.

    A thread does the writing, so parsing goes on while the caller is busy
    storing: the reader's output comes in bursts (a flush of the flow
    aggregate), and up to ``AHEAD`` pickled batches wait for the caller.
    """
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=AHEAD)
    writer = threading.Thread(target=_write_frames, args=(frames, out), daemon=True)
    writer.start()
    try:
        batch: list[object] = []
        due = time.monotonic() + BATCH_WAIT
        for item in produce():
            batch.append(item)
            if len(batch) >= BATCH or time.monotonic() >= due:
                frames.put(_frame("items", batch))
                batch, due = [], time.monotonic() + BATCH_WAIT
        frames.put(_frame("items", batch))
        frames.put(_frame("done", None))
    except InputError as exc:
        frames.put(_frame("input-error", str(exc)))
    except Exception as exc:  # reported to the caller, who raises it
        frames.put(_frame("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        frames.put(None)
        writer.join()


def _frame(kind: str, payload: object) -> bytes:
    """One message, pickled (records as their class and fields)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = record_reducers()
    pickler.dump((kind, payload))
    return buffer.getvalue()


Reducer = Callable[[Any], Any]


@cache
def record_reducers() -> dict[type, Reducer]:
    """Pickle's reductions of the record classes: the class called with every field in order."""
    table: dict[type, Reducer] = dict(copyreg.dispatch_table)
    for cls in get_args(Item):
        table[cls] = _reducer(cls)
    return table


def _reducer(cls: type) -> Reducer:
    """The reduction of one record class (its fields all set by its constructor, in order)."""
    names = [f.name for f in dataclasses.fields(cls)]
    fields = operator.attrgetter(*names)

    def reduce(record: Any) -> tuple[type, tuple[Any, ...]]:
        """The class and the record's field values."""
        return cls, fields(record)

    return reduce


def _write_frames(frames: queue.Queue[bytes | None], out: IO[bytes]) -> None:
    """Write messages down the pipe until told to stop; end the process if the caller left."""
    while (frame := frames.get()) is not None:
        try:
            out.write(frame)
            out.flush()
        except OSError:  # the caller stopped reading: nothing left to do
            os._exit(0)
