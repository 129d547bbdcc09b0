"""The Celery app, built from a Config when needed (never at import): queues, limits, the task."""

from __future__ import annotations

from typing import Any

from celery import Celery

from rolecall.cluster.chunk_work import ChunkWorker
from rolecall.inventory.errors import StoreError
from rolecall.orchestrator.config import Config

TASK = "rolecall.scan_chunk"
RETRY_SECONDS = 30
"""How long a chunk waits before it is tried again after a database error."""


def site_queue(site: str) -> str:
    """The queue a site's workers serve."""
    return f"rolecall.site.{site}"


def soft_limit(hard: int) -> int:
    """The soft time limit, shortly before the hard one: the chunk is failed, not killed."""
    return max(1, hard - max(1, min(60, hard // 10)))


def cluster_app(config: Config, database: str) -> Celery:
    """A Celery app for config's [cluster], its chunk task storing into database."""
    cluster = config.cluster
    app = Celery("rolecall", broker=cluster.broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # The chunk's rows in the inventory carry its state; no result backend is needed.
        task_ignore_result=True,
        # At least once: acknowledged when done, one at a time, given back if the worker dies.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        # A chunk its hard time limit killed goes back to the queue (Celery acknowledges it by
        # default, and its row would stay running): MAX_ATTEMPTS fails one that keeps doing so.
        task_acks_on_failure_or_timeout=False,
        # Redis hands an unacknowledged chunk to another worker after visibility_timeout;
        # looked for every 10 s (kombu's default looks every 100 s), a cheap sorted-set read.
        broker_transport_options={
            "visibility_timeout": cluster.visibility_timeout,
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
        },
        task_time_limit=cluster.chunk_time_limit,
        task_soft_time_limit=soft_limit(cluster.chunk_time_limit),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    work = ChunkWorker(config, database)

    def scan_chunk(
        task: Any,
        chunk_id: int,
        ports: str | None = None,
        probes: list[str] | None = None,
        top_ports: int | None = None,
    ) -> str:
        """Run one queued chunk; a database error sends it back to the queue for later."""
        try:
            return work.run(chunk_id, ports, probes, top_ports, task.request.retries or 0)
        except StoreError as exc:
            raise task.retry(exc=exc, countdown=RETRY_SECONDS, max_retries=None) from None

    # Not shared: each app (a daemon builds one per queued scan) keeps its own callable.
    app.task(name=TASK, bind=True, shared=False)(scan_chunk)
    return app
