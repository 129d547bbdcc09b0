"""A workstation's span follows its client roles' new evidence, as a full derivation has it.

A host's role counts for the workstation window merged over its sources. A host whose
roles within the window do not change is not judged again: its workstation row is only
stretched over the new evidence of its client roles; a host with a role back in the
window, from any source, is judged again. Each case is checked against a full
derivation over the same evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rolecall.inventory.store import Store
from rolecall.probes.records import Observation
from tests.inventory_sql import query

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOST = "10.20.0.5"
OTHER = "10.20.0.6"


def _query(host: str, source: str, seen: datetime, name: str) -> Observation:
    """A DNS query the host made: evidence of the dns-client role."""
    return Observation(host, "dns-query", source, seen, 53, "udp", name)


def _add(store: Store, *records: Observation) -> None:
    """Store records and derive from what is new."""
    with store.writer() as writer:
        for record in records:
            writer.add(record)
    store.derive()


def _roles(database: str) -> list[tuple[Any, ...]]:
    """Every role row's content, in one order."""
    return sorted(
        query(database, "SELECT address, role, source, first_seen, last_seen FROM role"),
        key=repr,
    )


def _workstation(database: str, host: str) -> tuple[Any, ...]:
    """The host's workstation span."""
    rows = query(
        database,
        f"SELECT first_seen, last_seen FROM role WHERE role = 'workstation' AND address = '{host}'",  # noqa: S608 - a constant
    )
    assert len(rows) == 1
    return tuple(rows[0])


def test_new_evidence_of_held_client_roles_stretches_the_workstation(database: str) -> None:
    store = Store.open(database)
    _add(store, _query(HOST, "pcap", T0, "a.example"), _query(OTHER, "pcap", T0, "b.example"))
    before = _workstation(database, HOST)
    # Later evidence of the same role and source; older evidence from another source of
    # a role the host holds (within the window); the other host's evidence moves "now".
    _add(
        store,
        _query(HOST, "pcap", T0 + timedelta(days=2), "c.example"),
        _query(HOST, "zeek", T0 - timedelta(days=1), "d.example"),
        _query(OTHER, "pcap", T0 + timedelta(days=3), "e.example"),
    )
    stretched = _roles(database)
    after = _workstation(database, HOST)
    store.derive(full=True)
    store.close()
    assert _roles(database) == stretched
    assert after != before
    assert _workstation(database, HOST) == after


def test_evidence_of_a_client_role_outside_the_window_leaves_the_span(database: str) -> None:
    store = Store.open(database)
    _add(store, _query(HOST, "pcap", T0, "a.example"))
    # Far older than the workstation window (30 days before the newest evidence).
    _add(store, _query(HOST, "zeek", T0 - timedelta(days=90), "old.example"))
    incremental = _roles(database)
    store.derive(full=True)
    store.close()
    assert _roles(database) == incremental


def test_a_role_back_in_the_window_from_another_source_judges_the_host(database: str) -> None:
    store = Store.open(database)
    # The host's only role is older than the window: no workstation yet.
    _add(
        store,
        _query(HOST, "zeek", T0 - timedelta(days=90), "old.example"),
        _query(OTHER, "pcap", T0, "b.example"),
    )
    assert HOST not in {row[0] for row in _roles(database) if row[1] == "workstation"}
    # The same role, now from another source and within the window.
    _add(store, _query(HOST, "pcap", T0, "a.example"))
    incremental = _roles(database)
    store.derive(full=True)
    store.close()
    assert _roles(database) == incremental
    # The role merged over its sources is within the window: its first sighting counts.
    first = min(row[3] for row in incremental if row[:2] == (HOST, "dns-client"))
    assert _workstation(database, HOST)[0] == first
