"""`ingest ...`: each file read by its reader and stored in one transaction, once."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inventory.store import Store
from orchestrator.interrupts import Interrupts, deferred_interrupts
from orchestrator.progress import Reporter
from probes.errors import InputError
from probes.records import Item, ReadWarning

Reader = Callable[[Path], Iterator[Item]]
MAX_WARNINGS_SHOWN = 5


@dataclass
class IngestSummary:
    """What an ingest stored, skipped and could not read."""

    run_id: int
    counts: Counter[str] = field(default_factory=Counter)
    warnings: list[ReadWarning] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def file_digest(path: Path) -> tuple[str, int]:
    """Return a file's SHA-256 and size; InputError if it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest(), size


def _ingest_one(
    store: Store,
    kind: str,
    path: Path,
    reader: Reader,
    summary: IngestSummary,
    interrupts: Interrupts,
) -> None:
    """Store one file's records in one transaction, unless it was ingested before."""
    digest, size = file_digest(path)
    if store.already_ingested(kind, digest):
        summary.counts["files_already_ingested"] += 1
        return
    warnings: list[ReadWarning] = []
    with store.writer() as writer:
        for item in reader(path):
            interrupts.check()
            if isinstance(item, ReadWarning):
                warnings.append(item)
            else:
                writer.add(item)
        writer.mark_ingested(kind, digest, str(path), size, summary.run_id)
    summary.counts.update(writer.counts)
    summary.counts["files"] += 1
    summary.counts["warnings"] += len(warnings)
    summary.warnings.extend(warnings[:MAX_WARNINGS_SHOWN])


def ingest_files(
    store: Store, kind: str, paths: Sequence[Path], reader: Reader, reporter: Reporter
) -> IngestSummary:
    """Ingest every file; a file that cannot be read is reported and the rest go on."""
    summary = IngestSummary(store.start_run(f"ingest {kind}", " ".join(map(str, paths))))
    status = "ok"
    try:
        with (
            deferred_interrupts() as interrupts,
            reporter.task(f"ingesting {kind}", len(paths)) as advance,
        ):
            for path in paths:
                try:
                    _ingest_one(store, kind, path, reader, summary, interrupts)
                except InputError as exc:
                    summary.failures.append(str(exc))
                    reporter.note(f"rolecall: {exc}")
                advance(1, path.name)
    except KeyboardInterrupt:
        store.finish_run(summary.run_id, "interrupted", dict(summary.counts), "interrupted")
        raise
    except Exception as exc:
        store.finish_run(summary.run_id, "failed", dict(summary.counts), str(exc))
        raise
    if summary.counts["files"]:
        summary.counts["roles"] = store.derive_roles()
    if summary.failures or summary.counts["warnings"]:
        status = "partial" if summary.counts["files"] else "failed"
    store.finish_run(summary.run_id, status, dict(summary.counts), "; ".join(summary.failures))
    return summary
