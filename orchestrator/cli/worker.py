"""`rolecall worker --site NAME`: a Celery worker serving one site's queue of scan chunks."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rolecall.orchestrator.cli.session import session_of
from rolecall.orchestrator.node_names import node_name


def worker(
    ctx: typer.Context,
    site: Annotated[
        str, typer.Option("--site", metavar="NAME", help="The site whose queue this serves.")
    ],
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=256, help="Chunks run at once (processes)."),
    ] = 1,
) -> None:
    """Run scan chunks queued to a site, within this machine's own [scope], until stopped."""
    session = session_of(ctx)
    config = session.config
    node_name(site, "--site")
    if not config.scope.allow:
        from rolecall.orchestrator.config import config_error

        raise config_error(
            config,
            "scope.allow: a worker probes only what its own [scope] allows: list this"
            " site's networks there",
        )
    # Loaded when the command runs, so that every other command starts without Celery (or
    # logging, which only Celery's worker writes to).
    import logging

    from rolecall.cluster.app import cluster_app, site_queue
    from rolecall.cluster.broker import check_broker
    from rolecall.cluster.sweeper import sweep
    from rolecall.inventory.store import Store

    # Once here: a broker down at start is a mistake to say (exit 1); once the worker runs,
    # Celery retries a broker that goes away until it is back.
    check_broker(config.cluster.broker)
    # Opened (and upgraded) once here, swept, then closed: each worker process opens its own.
    store = Store.open(session.database)
    try:
        for said in sweep(store, config.cluster):
            session.reporter.warn(f"swept {said}")
    finally:
        store.close()
    # Each worker process opens the inventory once; alembic's plugin lines say nothing then.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = cluster_app(config, session.database)
    app.worker_main(
        [
            "worker",
            "--queues",
            site_queue(site),
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--hostname",
            f"{site}.{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
