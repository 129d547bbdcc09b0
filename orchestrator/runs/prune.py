"""`prune`: the retention job the command line and the daemon's daily prune both call."""

from __future__ import annotations

from dataclasses import dataclass

from rolecall.inventory.retention import PruneSummary, prune
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config

RUN_KIND = "prune"


@dataclass(frozen=True)
class PruneOutcome:
    """A recorded prune: its run and what it removed."""

    run_id: int
    summary: PruneSummary

    def text(self) -> str:
        """What was removed, per table: "smtp 3, socks 0, ... (before 2025-10-29)"."""
        removed = ", ".join(f"{table} {count}" for table, count in self.summary.removed.items())
        return f"removed {removed} (rows before {self.summary.cutoff.isoformat()})"


def prune_store(store: Store, config: Config) -> PruneOutcome:
    """Prune per-event rows older than [retention] days, as one recorded run (kind "prune")."""
    days = config.retention.days
    with store.run(RUN_KIND, f"older than {days} days") as run:
        summary = prune(store, days)
        run.counts.update({f"{table}_removed": n for table, n in summary.removed.items()})
        run.counts["partitions_dropped"] = summary.partitions_dropped
    return PruneOutcome(run.id, summary)
