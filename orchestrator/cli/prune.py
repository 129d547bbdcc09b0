"""`rolecall prune`: remove per-event rows older than [retention] days, now."""

from __future__ import annotations

import typer

from rolecall.orchestrator.cli.session import session_of

# The database layer is loaded by the command that runs (see rolecall.orchestrator.cli.app).


def prune(ctx: typer.Context) -> None:
    """Remove mail, SOCKS, CONNECT, flow and observation rows older than [retention] days.

    Hosts, services, runs and the daily series stay. Roles and findings that only pruned
    rows supported end at the next full derivation (findings derive --full). The daemon
    does the same once a day.
    """
    session = session_of(ctx)
    store = session.existing_store()
    from rolecall.orchestrator.runs.prune import prune_store

    outcome = prune_store(store, session.config)
    for table, count in outcome.summary.removed.items():
        typer.echo(f"{table}\t{count}")
    cutoff = outcome.summary.cutoff.isoformat()
    typer.echo(f"run {outcome.run_id}: removed rows of days before {cutoff}")
