"""One queued chunk on a site worker: its own scope first, then nmap, probes, names, stored."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from billiard.exceptions import SoftTimeLimitExceeded
from netaddr import IPNetwork

from rolecall.cluster.sweeper import sweep
from rolecall.errors import RolecallError
from rolecall.inventory.errors import StoreError
from rolecall.inventory.scan_chunks import ENDED, Chunk
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.orchestrator.scope import Scope, parse_target
from rolecall.probes.gate import OutOfScopeError

MAX_ATTEMPTS = 3
"""A chunk taken this many times without ending (its workers died) is failed, not retried."""

DERIVE_EVERY_SECONDS = 300.0
"""While a run goes on, a worker derives at most this often after its chunks.

The run's last chunk always derives; in between, findings of a scan lasting hours still
appear within minutes, while derivations (serialised by the inventory's write lock, up to
seconds each on a large inventory) take no more than a small share of the workers' time.
"""

LOG = "rolecall.worker"


def worker_name() -> str:
    """This process as a chunk records its worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def refusal(scope: Scope, targets: Sequence[str]) -> str:
    """Why this worker's scope refuses a chunk's targets ("" if every one is inside)."""
    for target in targets:
        try:
            network = parse_target(target)
            scope.admit_network(str(network))
        except (OutOfScopeError, RolecallError) as exc:
            return f"refused by this worker's [scope]: {exc}"
    return ""


def planned(config: Config, scope: Scope, chunk: Chunk) -> tuple[list[IPNetwork], str]:
    """The chunk's networks as this worker's own limits plan them, or why it refuses them.

    Planned as a local scan plans (scope.max_addresses, scan.max_ipv6_sweep); a chunk
    whose address count is not its row's was not cut by a coordinator: refused too.
    """
    try:
        networks = [parse_target(target) for target in chunk.targets]
        plan = scope.plan(networks, config.scope.max_addresses, config.scan.max_ipv6_sweep)
    except (OutOfScopeError, RolecallError) as exc:
        return [], f"refused by this worker's limits: {exc}"
    if plan.unswept:
        wide = ", ".join(str(network) for network in plan.unswept)
        return [], (
            f"refused by this worker's limits: {wide} is wider than"
            f" /{config.scan.max_ipv6_sweep} (scan.max_ipv6_sweep) and is never swept"
        )
    if plan.sweep.size != chunk.addresses:
        return [], (
            f"refused: its targets hold {plan.sweep.size} addresses, its record says"
            f" {chunk.addresses} (not a chunk a coordinator queued)"
        )
    return list(plan.sweep.iter_cidrs()), ""


@dataclass
class ChunkWorker:
    """Runs chunks against the inventory with this worker's own config and scope."""

    config: Config
    database: str
    _store: Store | None = field(default=None, init=False)
    _pid: int = field(default=0, init=False)
    _derived: float | None = field(default=None, init=False)

    def store(self) -> Store:
        """The inventory, opened once in each worker process (never shared across a fork)."""
        if self._store is None or self._pid != os.getpid():
            self._store = Store.open(self.database)
            self._pid = os.getpid()
        return self._store

    def run(
        self,
        chunk_id: int,
        ports: str | None,
        probes: Sequence[str] | None,
        top_ports: int | None,
        retries: int = 0,
    ) -> str:
        """Run one chunk to its end and return its state; StoreError: try it again later.

        retries: how often this task was sent back after a database error; each may have
        taken the chunk once without its worker stopping, so it does not count as a death.
        """
        log = logging.getLogger(LOG)
        store = self.store()
        chunks = store.scan_chunks
        for said in sweep(store, self.config.cluster):
            log.warning("swept %s", said)
        chunk = chunks.get(chunk_id)
        if chunk is None:
            log.warning("chunk %d: not in the inventory %s: dropped", chunk_id, store.name)
            return "unknown"
        where = f"chunk {chunk.position} of run {chunk.run_id} ({' '.join(chunk.targets)})"
        me = worker_name()
        if chunk.state in ENDED:
            # Delivered again after it was stored: nothing to do but make sure the run ended.
            log.info("%s: %s already", where, chunk.state)
            self._close_run(store, chunk.run_id)
            return chunk.state
        if chunk.attempts - retries >= MAX_ATTEMPTS:
            said = f"taken {chunk.attempts} times and never finished (its workers stopped)"
            return self._end(store, chunk, "failed", said, me)
        scope = Scope.from_config(self.config.scope)
        refused = refusal(scope, chunk.targets)
        networks, refused = planned(self.config, scope, chunk) if not refused else ([], refused)
        if refused:
            log.warning("%s: %s", where, refused)
            return self._end(store, chunk, "refused", refused, me)
        if chunks.take(chunk_id, me) is None:
            return "ended"
        log.info("%s: scanning (nmap, probes, names)", where)
        # Loaded when a chunk runs: the worker's parent process never scans.
        from rolecall.orchestrator.runs.scan import scan_chunk_records  # noqa: PLC0415

        stored: bool | None = None
        try:
            records, counts = scan_chunk_records(
                self.config, scope, networks, ports, probes, top_ports
            )
            stored = chunks.complete(chunk_id, records, counts)
            log.info(
                "%s: %s (%d records)", where, "done" if stored else "done before", len(records)
            )
            self._close_run(store, chunk.run_id)
        except StoreError:
            raise
        except SoftTimeLimitExceeded:
            limit = self.config.cluster.chunk_time_limit
            if stored is None:
                said = f"ran past [cluster] chunk_time_limit ({limit} s)"
                return self._end(store, chunk, "failed", said)
            # Stored, then its derive ran out of time: the run still ends; the next derive
            # (any chunk's, any scan's) catches up on its findings.
            log.warning("%s: derive cut short by chunk_time_limit (%d s)", where, limit)
            self._close_run(store, chunk.run_id, derive=False)
        except RolecallError as exc:
            return self._end(store, chunk, "failed", str(exc))
        except Exception as exc:  # the run must still end: the chunk says what went wrong
            log.exception("%s: internal error", where)
            said = f"internal error: {type(exc).__name__}: {exc}"
            return self._end(store, chunk, "failed", said)
        return "done"

    def _end(self, store: Store, chunk: Chunk, state: str, error: str, worker: str = "") -> str:
        """End the chunk in state with error, and the run if it was the last; the state."""
        store.scan_chunks.end(chunk.id, state, error, worker)
        self._close_run(store, chunk.run_id)
        return state

    def _close_run(self, store: Store, run_id: int, derive: bool = True) -> None:
        """End the run, derived, if every chunk has ended; else derive if one is due."""
        state = store.scan_chunks.state(run_id)
        if state.status != "running":
            return
        now = time.monotonic()
        if not derive:
            if store.scan_chunks.end_run_if_complete(run_id, {}):
                logging.getLogger(LOG).info("run %d: ended, not derived", run_id)
            return
        if any(chunk.state not in ENDED for chunk in state.chunks):
            # The clock starts at this process's first chunk: one derive per interval.
            if self._derived is None:
                self._derived = now
            elif now - self._derived >= DERIVE_EVERY_SECONDS:
                store.derive()
                self._derived = now
            return
        derived = store.derive()
        self._derived = now
        status = store.scan_chunks.end_run_if_complete(
            run_id, {"roles": derived.roles, "findings": derived.findings}
        )
        if status:
            logging.getLogger(LOG).info("run %d: ended %s", run_id, status)
