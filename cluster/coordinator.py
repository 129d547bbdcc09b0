"""`scan subnet --site`: plan as a local scan, queue the chunks to the site, follow their rows."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from celery import Celery

from rolecall.cluster.app import TASK, cluster_app, site_queue
from rolecall.cluster.broker import broker_name, check_broker
from rolecall.cluster.errors import BrokerError, ClusterRunError, first_line
from rolecall.cluster.sweeper import stale_seconds, sweep
from rolecall.errors import RolecallError
from rolecall.inventory.scan_chunks import ENDED, Chunk, RunProgress, RunState
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import ClusterConfig, Config
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.progress import Reporter
from rolecall.orchestrator.runs.scan import plan_scan
from rolecall.orchestrator.settings import nmap_settings, probe_settings
from rolecall.probes.nmap.scan import chunk_networks

POLL_SECONDS = 0.05
"""How often the coordinator reads how far its run got: one indexed aggregate read."""
SWEEP_SECONDS = 5.0
"""How often the coordinator sweeps stale chunks (cluster.sweeper) while it follows."""
ASK_WORKERS_SECONDS = 1.0
"""How long the coordinator waits for workers to say which queues they serve."""


class _ServedError(RolecallError):
    """Not an error: a worker said it serves the queue, so the others need not be awaited."""


@dataclass(frozen=True)
class QueuedScan:
    """A scan queued to a site: its run, how many addresses in how many chunks."""

    run_id: int
    site: str
    addresses: int
    chunks: int
    notices: tuple[str, ...]
    cluster: ClusterConfig


def queue_scan(
    store: Store,
    config: Config,
    targets: Sequence[str],
    site: str,
    reporter: Reporter,
    ports: str | None = None,
    probes: Sequence[str] | None = None,
    top_ports: int | None = None,
) -> QueuedScan:
    """Check scope and broker, record the run and its chunks, then queue them to the site.

    With the broker down nothing is written (BrokerError). Each worker checks the chunk
    against its own [scope] again before nmap starts.
    """
    probe_settings(config, probes)
    nmap_settings(config, ports, top_ports)
    _, addresses, notices = plan_scan(store, config, targets, reporter)
    pieces = [
        (" ".join(str(network) for network in chunk), sum(network.size for network in chunk))
        for chunk in chunk_networks(addresses, config.cluster.chunk_addresses)
    ]
    if not pieces:
        raise UsageError("the targets hold no address to scan once [scope] exclude is taken out")
    check_broker(config.cluster.broker)
    app = cluster_app(config, store.name)
    try:
        if not site_served(app, site):
            # Queueing for a worker that starts later is legitimate: say so, and go on.
            reporter.warn(
                f"no worker serves site {site} now: the chunks wait in its queue until one starts"
            )
        run_id, chunks = store.scan_chunks.queue(" ".join(targets), site, pieces)
        _publish(app, store, config, run_id, chunks, site, ports, probes, top_ports)
    finally:
        app.close()
    return QueuedScan(run_id, site, addresses.size, len(chunks), tuple(notices), config.cluster)


def _publish(
    app: Celery,
    store: Store,
    config: Config,
    run_id: int,
    chunks: Sequence[Chunk],
    site: str,
    ports: str | None,
    probes: Sequence[str] | None,
    top_ports: int | None,
) -> None:
    """Send each chunk's task to the site's queue; BrokerError (and the run failed) if not."""
    options = {"ports": ports, "probes": None if probes is None else list(probes)}
    try:
        with app.producer_or_acquire() as producer:
            for chunk in chunks:
                app.send_task(
                    TASK,
                    kwargs={"chunk_id": chunk.id, **options, "top_ports": top_ports},
                    queue=site_queue(site),
                    task_id=chunk.task_id,
                    producer=producer,
                )
    except Exception as exc:  # kombu raises the transport's own errors, whatever they are
        said = f"could not queue run {run_id} to the broker {broker_name(config.cluster.broker)}"
        store.scan_chunks.end_run(run_id, "failed", said)
        raise BrokerError(f"{said}: {first_line(exc)}") from None


def site_served(app: Celery, site: str, timeout: float = ASK_WORKERS_SECONDS) -> bool:
    """Whether a running worker answers, within timeout, that it consumes the site's queue.

    True also when the workers cannot be asked: publishing then says what is wrong.
    """
    queue = site_queue(site)

    def heard(reply: dict[str, list[dict[str, object]]]) -> None:
        """Stop listening at the first worker serving the queue (else all wait timeout)."""
        if any(served.get("name") == queue for queues in reply.values() for served in queues):
            raise _ServedError

    try:
        app.control.inspect(timeout=timeout, callback=heard).active_queues()
    except _ServedError:
        return True
    except Exception:  # kombu raises the transport's own errors, whatever they are
        return True
    return False


def follow(
    store: Store, queued: QueuedScan, reporter: Reporter, poll: float = POLL_SECONDS
) -> RunState:
    """Follow the chunks with the scan's bar until the run ends; say each chunk not done.

    Each poll is one cheap read; only chunks newly ended are read. Stale chunks are swept
    now and then; with nothing changing for longer than a chunk can take and be handed
    on, it stops following (ClusterRunError naming what is stuck).
    """
    told: set[int] = set()
    counts: Counter[str] = Counter()
    chunks = store.scan_chunks
    seen: RunProgress | None = None
    changed = swept = time.monotonic()
    patience = stale_seconds(queued.cluster) + 2 * SWEEP_SECONDS
    with reporter.task("scanning", queued.addresses) as advance:
        while True:
            progress = chunks.progress(queued.run_id)
            now = time.monotonic()
            if progress != seen:
                seen, changed = progress, now
                for chunk in chunks.ended_chunks(queued.run_id, told):
                    told.add(chunk.position)
                    counts.update(chunk.counts)
                    if chunk.state != "done":
                        reporter.warn(
                            f"site {chunk.site}: chunk {chunk.position}"
                            f" ({' '.join(chunk.targets)}) {chunk.state} by worker"
                            f" {chunk.worker or '-'}: {chunk.error}"
                        )
                    advance(chunk.addresses, f"{counts['open_ports']} open ports")
            if progress.status != "running":
                return chunks.state(queued.run_id)
            if now - swept >= SWEEP_SECONDS:
                swept = now
                sweep(store, queued.cluster)
            elif now - changed > patience:
                raise ClusterRunError(_stuck(chunks.state(queued.run_id), patience))
            time.sleep(poll)


def _stuck(state: RunState, waited: float) -> str:
    """The sentence saying that following stopped, which chunks are stuck and how to look."""
    stuck = [chunk for chunk in state.chunks if chunk.state not in ENDED]
    named = ", ".join(
        f"chunk {chunk.position} {chunk.state}"
        + (f" on {chunk.worker}" if chunk.state == "running" else "")
        for chunk in stuck[:5]
    )
    more = f" and {len(stuck) - 5} more" if len(stuck) > 5 else ""
    site = stuck[0].site if stuck else "?"
    return (
        f"stopped following run {state.run_id}: nothing changed for {waited:.0f} s ({named}{more});"
        f" `rolecall runs` shows its chunks, and `rolecall worker --site {site}` must run on"
        " this inventory and broker"
    )
