"""`ingest ...`: each file read by its reader and stored in one transaction, once."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rolecall.inventory.settings import DeriveSettings
from rolecall.orchestrator.interrupts import Interrupts, deferred_interrupts
from rolecall.orchestrator.progress import Reporter
from rolecall.probes.errors import InputError
from rolecall.probes.records import Item, Reader, ReadWarning

if TYPE_CHECKING:
    from rolecall.inventory.store import Store  # loaded by the command that opens one (see cli)

MAX_WARNINGS_SHOWN = 5
DIGEST_CHUNK = 16 << 20
DIGEST_FLOOR = 1 << 20
WRITE_BATCHES = {"pcap": 4096}
"""Records queued before a write, where the store's default does not suit: a capture yields
few records while its reader works in a second process, so they are written as they come
and little is left to write when the reading ends."""


@dataclass
class IngestSummary:
    """What an ingest stored, skipped and could not read."""

    run_id: int
    counts: Counter[str] = field(default_factory=Counter)
    warnings: list[ReadWarning] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def refuse_irregular(kind: str, paths: Sequence[Path]) -> None:
    """Refuse, with one sentence, a path that is not a regular file (a folder only for zeek).

    A device, pipe or socket may never end (``/dev/zero``) or block on opening (a FIFO
    without a writer): it is refused before anything is read or any run recorded.
    """
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise InputError(
                f"cannot read {path}: {exc.strerror or exc} (nothing ingested)"
            ) from None
        if stat.S_ISREG(mode) or (kind == "zeek" and stat.S_ISDIR(mode)):
            continue
        if stat.S_ISDIR(mode):
            raise InputError(
                f"{path} is a folder: ingest {kind} reads files (nothing ingested, no run recorded)"
            )
        raise InputError(
            f"{path} is not a regular file (a device, pipe or socket): "
            "nothing ingested, no run recorded"
        )


def file_digest(path: Path, stop: threading.Event | None = None) -> tuple[str, int]:
    """Return a file's SHA-256 and size; InputError if it cannot be read.

    Once ``stop`` is set the reading ends at the next chunk and the result is of the
    part read, which nobody uses: the file's reader failed and the file is not stored.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb", buffering=0) as handle:
            # Large reads into one buffer: read and update release the GIL, and each chunk
            # takes it back once, so few chunks keep this thread from slowing the reader.
            # No larger than the file needs (the buffer is zeroed, so all of it is resident),
            # nor small enough to crawl through a file that grows while it is read.
            length = min(DIGEST_CHUNK, max(os.fstat(handle.fileno()).st_size, DIGEST_FLOOR))
            buffer = bytearray(length)
            view = memoryview(buffer)
            while read := handle.readinto(buffer):
                if stop is not None and stop.is_set():
                    break
                digest.update(view[:read])
                size += read
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest(), size


class _AlreadyIngestedError(Exception):
    """Raised inside the writer to roll back a file found to be ingested before."""


def _known(store: Store, kind: str, digest: Future[tuple[str, int]]) -> bool:
    """Whether the file's digest, once computed, names a file ingested before."""
    return digest.done() and store.already_ingested(kind, digest.result()[0])


def _ingest_one(
    store: Store,
    kind: str,
    path: Path,
    items: Iterator[Item],
    summary: IngestSummary,
    interrupts: Interrupts,
) -> None:
    """Store one file's records in one transaction, unless it was ingested before."""
    warnings: list[ReadWarning] = []
    # Hashing a large capture costs as much as a third of reading it; hashlib releases the
    # GIL, so the digest is computed on the other core while the reader parses.
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(file_digest, path, stop)
        try:
            with store.writer(WRITE_BATCHES.get(kind)) as writer:
                checked = False
                for count, item in enumerate(interrupts.interruptible(items)):
                    if not checked and count % 4096 == 0 and digest.done():
                        checked = True
                        if _known(store, kind, digest):
                            raise _AlreadyIngestedError
                    if isinstance(item, ReadWarning):
                        warnings.append(item)
                    else:
                        writer.add(item)
                sha256, size = digest.result()
                if store.already_ingested(kind, sha256):
                    raise _AlreadyIngestedError
                if not writer.mark_ingested(kind, sha256, str(path), size, summary.run_id):
                    raise _AlreadyIngestedError  # by another ingest of it at the same time
        except _AlreadyIngestedError:
            summary.counts["files_already_ingested"] += 1
            return
        finally:
            # A reader that failed (a bad header on a huge file) or was interrupted need
            # not wait for the whole file to be hashed: the pool's exit waits for it.
            stop.set()
    summary.counts.update(writer.counts)
    summary.counts["files"] += 1
    # Damage to the file makes the ingest partial (exit 2); what it says about the traffic
    # it recorded (segments a sensor missed) is shown but the file was read as it is.
    traffic = sum(1 for warning in warnings if warning.traffic)
    summary.counts["warnings"] += len(warnings) - traffic
    summary.counts["traffic_warnings"] += traffic
    summary.warnings.extend(warnings[:MAX_WARNINGS_SHOWN])


def ingest_files(
    store: Store,
    kind: str,
    paths: Sequence[Path],
    reader: Reader,
    reporter: Reporter,
    derivation: DeriveSettings | None = None,
    first: Iterator[Item] | None = None,
) -> IngestSummary:
    """Ingest every file, then derive; a file that cannot be read is reported, the rest go on.

    Derivation uses the given settings (the config's), or those of the last derivation.
    ``first`` is ``reader(paths[0])`` if the caller called it already (see ``read_pcap``:
    a large capture is being read while the caller opens the store).
    InputError, before any run is recorded, for a path that is not a regular file.
    """
    refuse_irregular(kind, paths)
    with store.run(f"ingest {kind}", " ".join(map(str, paths))) as run:
        summary = IngestSummary(run.id, run.counts)
        with (
            deferred_interrupts() as interrupts,
            reporter.task(f"ingesting {kind}", len(paths)) as advance,
        ):
            for index, path in enumerate(paths):
                items = first if index == 0 and first is not None else reader(path)
                try:
                    _ingest_one(store, kind, path, items, summary, interrupts)
                except InputError as exc:
                    summary.failures.append(str(exc))
                    reporter.warn(f"rolecall: {exc}")
                finally:
                    close_items(items)
                advance(1, path.name)
        if summary.counts["files"]:
            derived = store.derive(derivation)
            summary.counts["roles"] = derived.roles
            summary.counts["findings"] = derived.findings
        if summary.failures or summary.counts["warnings"]:
            run.mark(
                "partial" if summary.counts["files"] else "failed", "; ".join(summary.failures)
            )
    return summary


def close_items(items: Iterator[Item]) -> None:
    """Stop a reader now, read to its end or not (a generator, or a worker process)."""
    close = getattr(items, "close", None)
    if callable(close):
        close()
