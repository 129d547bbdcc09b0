"""Raised findings that resolve_stale would resolve are written resolved, with the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rolecall.inventory.findings import Raised, store_raised
from rolecall.inventory.store import Store
from rolecall.inventory.tables import ASSET_TABLE
from tests.inventory_sql import query

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)
STALE = timedelta(hours=24)


def _raised(rule: str, address: str, last: datetime) -> Raised:
    """A finding raised on one address, its evidence last seen at `last`."""
    return Raised(rule, address, "info", f"{rule} on {address}", last, last, ["smtp:1"])


def _statuses(database: str) -> dict[tuple[str, str], str]:
    """Every finding's status, by (rule, address)."""
    rows = query(database, "SELECT rule, address, status FROM finding")
    return {(rule, address): status for rule, address, status in rows}


def _actions(database: str) -> dict[tuple[str, str], list[str]]:
    """Every finding's alert events, in order, by (rule, address)."""
    found: dict[tuple[str, str], list[str]] = {}
    rows = query(database, "SELECT rule, address, action FROM alert_event ORDER BY sequence")
    for rule, address, action in rows:
        found.setdefault((rule, address), []).append(action)
    return found


def test_a_stale_finding_is_written_resolved_and_a_fresh_one_open(database: str) -> None:
    store = Store.open(database)
    try:
        with store.transaction("test") as connection:
            connection.execute(
                ASSET_TABLE.insert(),
                [
                    {"address": "10.9.0.1", "first_seen": NOW - STALE * 3, "last_seen": NOW},
                    {"address": "10.9.0.2", "first_seen": NOW - STALE * 3, "last_seen": NOW},
                ],
            )
        with store.transaction("test") as connection:
            store_raised(
                connection,
                [
                    # Seen two days after its evidence: stale.
                    _raised("new-smtp-client", "10.9.0.1", NOW - STALE * 2),
                    # Seen an hour after it: open.
                    _raised("new-smtp-client", "10.9.0.2", NOW - timedelta(hours=1)),
                    # A probed service's finding holds until a probe says otherwise.
                    _raised("open-relay", "10.9.0.1", NOW - STALE * 2),
                ],
                replace=True,
                stale_after=STALE,
            )
        assert _statuses(database) == {
            ("new-smtp-client", "10.9.0.1"): "resolved",
            ("new-smtp-client", "10.9.0.2"): "open",
            ("open-relay", "10.9.0.1"): "open",
        }
        # A finding that appeared and went stale at once still says so to the outputs.
        assert _actions(database) == {
            ("new-smtp-client", "10.9.0.1"): ["opened", "resolved"],
            ("new-smtp-client", "10.9.0.2"): ["opened"],
            ("open-relay", "10.9.0.1"): ["opened"],
        }
        with store.transaction("test") as connection:
            # Raised again, now fresh: reopened; the other one raised stale: resolved.
            store_raised(
                connection,
                [
                    _raised("new-smtp-client", "10.9.0.1", NOW),
                    _raised("new-smtp-client", "10.9.0.2", NOW - STALE * 2),
                ],
                replace=True,
                stale_after=STALE,
            )
        statuses = _statuses(database)
        assert statuses["new-smtp-client", "10.9.0.1"] == "open"
        assert statuses["new-smtp-client", "10.9.0.2"] == "resolved"
        actions = _actions(database)
        assert actions["new-smtp-client", "10.9.0.1"] == ["opened", "resolved", "reopened"]
        assert actions["new-smtp-client", "10.9.0.2"] == ["opened", "resolved"]
    finally:
        store.close()
