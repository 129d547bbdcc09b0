"""The role table: roles found in new evidence merged in, and workstations judged per host."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    Table,
    Text,
    Update,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)

from rolecall.inventory.derivation.role_rules import CLIENT_ROLES
from rolecall.inventory.findings import merged_evidence
from rolecall.inventory.rules.host_roles import HeldRole, roles_of
from rolecall.inventory.sql.bulk import BulkStatement
from rolecall.inventory.sql.in_lists import in_list
from rolecall.inventory.tables import ROLE_TABLE, SERVICE_TABLE

MAX_EVIDENCE: Final = 20
WORKSTATION_SOURCE: Final = "derived"
"""The source of roles judged from other roles rather than read from evidence."""

RoleKey = tuple[str, str, str]


@dataclass(slots=True)
class FoundRole:
    """A role being derived: its evidence and when it was seen."""

    first_seen: datetime
    last_seen: datetime
    evidence: list[str] = field(default_factory=list)


class RoleAccumulator:
    """Roles by (address, role, source), merged as evidence arrives."""

    def __init__(self) -> None:
        self.found: dict[RoleKey, FoundRole] = {}

    def add(self, key: RoleKey, first: datetime, last: datetime, proof: str) -> None:
        """Add one piece of evidence for a role."""
        role = self.found.get(key)
        if role is None:
            self.found[key] = FoundRole(first, last, [proof])
            return
        # Compared, not min() and max() (a sixth of their cost): once per evidence row.
        role.first_seen = first if first < role.first_seen else role.first_seen
        role.last_seen = last if last > role.last_seen else role.last_seen
        evidence = role.evidence
        if len(evidence) < MAX_EVIDENCE and proof not in evidence:
            evidence.append(proof)


@dataclass(slots=True)
class StoredRoles:
    """What merging needs of the stored roles among some hosts: each role's row id and
    evidence JSON by (address, role, source), and the (address, role) pairs held by any
    source, and held by one seen since the workstation window's start."""

    rows: dict[RoleKey, tuple[int, str]] = field(default_factory=dict)
    held: set[tuple[str, str]] = field(default_factory=set)
    recent: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class Merged:
    """Hosts a merge changed: with a new role, and with a role seen again within the
    workstation window after its last sighting (any source's) had fallen out of it."""

    gained: set[str]
    renewed: set[str]


def _stored(connection: Connection, keys: Iterable[RoleKey], window_start: datetime) -> StoredRoles:
    """The stored roles among the given roles' hosts, role by role."""
    table = ROLE_TABLE
    by_role: dict[str, set[str]] = defaultdict(set)
    for address, role, _ in keys:
        by_role[role].add(address)
    stored = StoredRoles()
    rows_by_key, held, recent = stored.rows, stored.held, stored.recent
    # Compared in the database: no datetime is built for each of many rows.
    since = case((table.c.last_seen < window_start, 0), else_=1)
    columns = (table.c.id, table.c.address, table.c.source, table.c.evidence, since)
    for role, addresses in by_role.items():
        among = in_list(connection.dialect, table.c.address, sorted(addresses))
        rows = connection.execute(select(*columns).where(table.c.role == role, among))
        for rid, address, source, evidence, within in rows:
            rows_by_key[address, role, source] = (rid, evidence)
            held.add((address, role))
            if within:
                recent.add((address, role))
    return stored


def _evidence_json(proofs: list[str]) -> str:
    """The JSON text json.dumps writes for a list of proofs, joined directly when no proof
    needs escaping (a full derivation writes one per role)."""
    raw = "".join(proofs)
    if not proofs or not raw.isascii() or not raw.isprintable() or '"' in raw or "\\" in raw:
        return json.dumps(proofs)
    quoted = '", "'.join(proofs)
    return f'["{quoted}"]'


def appended_evidence(text: str, proofs: Sequence[str]) -> str:
    """Stored evidence (JSON text) with new proofs appended, without repeats, up to the cap.

    Proofs are "table:id" references, so the JSON array can be extended as text, as
    json.dumps would write it (decoding and encoding it was most of the cost of an
    incremental derivation); a proof that JSON would escape, or that holds the
    separator, takes the JSON path.
    """
    joined = "".join(proofs)
    if '"' in joined or "\\" in joined or "," in joined or " " in joined:
        return json.dumps(merged_evidence(json.loads(text), proofs)[:MAX_EVIDENCE])
    held = 0 if text == "[]" else text.count('", "') + 1
    added: list[str] = []
    for proof in proofs:
        if held + len(added) >= MAX_EVIDENCE:
            break
        quoted = f'"{proof}"'
        if quoted not in text and quoted not in added:
            added.append(quoted)
    if not added:
        return text
    joined = ", ".join(added)
    return f"[{joined}]" if text == "[]" else f"{text[:-1]}, {joined}]"


def _stretch(table: Table, where: Any, first: Any, last: Any, evidence: Any) -> Update:
    """The statement that widens stored spans to include (first, last) and sets the
    evidence, in the database."""
    return (
        update(table)
        .where(where)
        .values(
            first_seen=case((table.c.first_seen < first, table.c.first_seen), else_=first),
            last_seen=case((table.c.last_seen > last, table.c.last_seen), else_=last),
            evidence=evidence,
        )
    )


def _update_rows(
    connection: Connection,
    columns: Sequence[Column[Any]],
    rows: list[tuple[Any, ...]],
    statement: Callable[[Mapping[str, Any]], Update],
) -> None:
    """Run an UPDATE once per row (its values in the order of ``columns``); ``statement``
    is given each row's values by column name.

    On SQLite, one executemany of bound parameters; psycopg sends an executemany as one
    statement per row, so on PostgreSQL the rows go in by COPY to a temporary table
    instead, and one UPDATE ... FROM joins them.
    """
    if not rows:
        return
    names = [column.name for column in columns]
    if connection.dialect.name != "postgresql":
        # Typed, so the bulk path converts datetimes exactly as the column stores them.
        binds = {column.name: bindparam(column.name, type_=column.type) for column in columns}
        BulkStatement(statement(binds)).execute_values(connection, names, rows, ())
        return
    changes = Table("row_changes", MetaData(), *columns, prefixes=["TEMPORARY"])
    changes.create(connection)
    BulkStatement(changes.insert(), copy_into=changes).execute_values(connection, names, rows, ())
    connection.execute(statement({column.name: column for column in changes.c}))
    changes.drop(connection)


def _write_merges(connection: Connection, table: Table, updates: list[tuple[Any, ...]]) -> None:
    """Widen the spans and set the evidence of stored roles (rows of rid, first, last,
    evidence)."""
    columns = (
        Column("rid", BigInteger),
        Column("first", table.c.first_seen.type),
        Column("last", table.c.last_seen.type),
        Column("evidence", Text),
    )

    def merge(row: Mapping[str, Any]) -> Update:
        """The role's row, widened and with its evidence."""
        return _stretch(table, table.c.id == row["rid"], row["first"], row["last"], row["evidence"])

    _update_rows(connection, columns, updates, merge)


def _workstation_stretches(
    connection: Connection, spans: Mapping[str, tuple[datetime, datetime]]
) -> list[tuple[Any, ...]]:
    """Merges that stretch hosts' workstation rows over (first, last) spans (rows of rid,
    first, last, evidence); a host without the role has none.

    The verdict and the workstation's evidence rest on the host's roles and services
    within the window; for a host whose roles there are the same as at its last
    judgement, only the span can have grown, by the new evidence of its client roles.
    A host judged again after the merge has its workstation row made anew.
    """
    table = ROLE_TABLE
    if not spans:
        return []
    among = in_list(connection.dialect, table.c.address, sorted(spans))
    rows = connection.execute(
        select(table.c.id, table.c.address, table.c.evidence).where(
            table.c.role == "workstation", table.c.source == WORKSTATION_SOURCE, among
        )
    )
    return [(rid, *spans[address], evidence) for rid, address, evidence in rows]


def merge_roles(
    connection: Connection, found: RoleAccumulator, empty: bool, window_start: datetime
) -> Merged:
    """Merge derived roles into the table; say which hosts changed how (see Merged).

    Spans are widened in the database; evidence is appended while under the cap. A
    workstation is stretched over the new evidence of its host's client roles that
    were within the window already (see _workstation_stretches).
    `window_start`: the start of the workstation window (see judge_workstations).
    """
    table = ROLE_TABLE
    stored = StoredRoles() if empty else _stored(connection, found.found, window_start)
    # A host's role counts for the workstation window merged over its sources (as
    # judge_workstations reads it): recent if any source's row was seen within the window.
    rows, held, recent = stored.rows, stored.held, stored.recent
    inserts: list[dict[str, Any]] = []
    updates: list[tuple[Any, ...]] = []
    gained: set[str] = set()
    renewed: set[str] = set()
    spans: dict[str, tuple[datetime, datetime]] = {}
    for key, role in found.found.items():
        known = rows.get(key)
        pair = (key[0], key[1])
        if pair in recent:
            if key[1] in CLIENT_ROLES:
                # Still within the window, merged: the workstation span covers the new
                # evidence, whatever its time.
                first, last = spans.get(key[0], (role.first_seen, role.last_seen))
                spans[key[0]] = (min(first, role.first_seen), max(last, role.last_seen))
        elif pair in held and window_start <= role.last_seen:
            renewed.add(key[0])
        if known is None:
            inserts.append(
                {
                    "address": key[0],
                    "role": key[1],
                    "source": key[2],
                    "evidence": _evidence_json(role.evidence),
                    "first_seen": role.first_seen,
                    "last_seen": role.last_seen,
                }
            )
            if pair not in held:
                gained.add(key[0])
            continue
        rid, evidence = known
        updates.append(
            (rid, role.first_seen, role.last_seen, appended_evidence(evidence, role.evidence))
        )
    updates.extend(_workstation_stretches(connection, spans))
    # In row order, each table page is written once however many of its rows change.
    updates.sort(key=itemgetter(0))
    BulkStatement(table.insert(), copy_into=table).execute(connection, inserts)
    _write_merges(connection, table, updates)
    return Merged(gained, renewed)


def window_passed(connection: Connection, before: datetime | None, now: datetime) -> set[str]:
    """Hosts with a role or service last seen between two starts of the workstation window.

    The window moves with the newest evidence, whichever host that is about; these
    hosts' recent roles and services (so their workstation verdict) may have changed
    though no evidence about them did. `before` None: the earlier start is not known.
    """
    if before is not None and before == now:
        return set()
    start, end = (None, now) if before is None else (min(before, now), max(before, now))
    found: set[str] = set()
    for table in (ROLE_TABLE, SERVICE_TABLE):
        passed = table.c.last_seen < end
        if start is not None:
            passed &= table.c.last_seen >= start
        found.update(connection.execute(select(table.c.address).where(passed).distinct()).scalars())
    return found


def _serving(connection: Connection, addresses: Sequence[str] | None, since: datetime) -> set[str]:
    """Addresses with a service seen since a time, among these (None: any)."""
    table = SERVICE_TABLE
    query = select(table.c.address).where(table.c.last_seen >= since).distinct()
    if addresses is None:
        return set(connection.execute(query).scalars())
    among = in_list(connection.dialect, table.c.address, addresses)
    return set(connection.execute(query.where(among)).scalars())


def held_roles(found: RoleAccumulator) -> dict[str, dict[str, HeldRole]]:
    """The roles of a derivation that read everything, by host and merged over sources, as
    roles_of would read them back from the table, but for the workstations (judged from
    these; with_workstations adds them)."""
    held: dict[str, dict[str, HeldRole]] = defaultdict(dict)
    shared: set[tuple[str, str]] = set()  # roles of a host seen by more than one source
    for (address, role, _), seen in found.found.items():
        known = held[address].get(role)
        if known is None:
            held[address][role] = HeldRole(seen.first_seen, seen.last_seen, [], seen.evidence)
            continue
        known.first_seen = min(known.first_seen, seen.first_seen)
        known.last_seen = max(known.last_seen, seen.last_seen)
        shared.add((address, role))
    by_source: dict[tuple[str, str], list[tuple[str, list[str]]]] = defaultdict(list)
    for (address, role, source), seen in found.found.items() if shared else ():
        if (address, role) in shared:
            by_source[address, role].append((source, seen.evidence))
    for (address, role), lists in by_source.items():
        # Merged in the sources' code point order, as roles_of merges them.
        merged: list[str] = []
        for _, evidence in sorted(lists):
            merged = merged_evidence(merged, evidence)
        held[address][role].known_evidence = merged
    return dict(held)


def with_workstations(
    connection: Connection, held: Mapping[str, Mapping[str, HeldRole]], addresses: Sequence[str]
) -> dict[str, dict[str, HeldRole]]:
    """The roles of these hosts, from held roles, with their stored workstation roles added."""
    table = ROLE_TABLE
    found = {address: dict(held[address]) for address in addresses if address in held}
    rows = connection.execute(
        select(table.c.address, table.c.first_seen, table.c.last_seen, table.c.evidence).where(
            table.c.role == "workstation", table.c.source == WORKSTATION_SOURCE
        )
    )
    for address, first_seen, last_seen, evidence in rows:
        if address in found:
            found[address]["workstation"] = HeldRole(first_seen, last_seen, [evidence])
    return found


def judge_workstations(
    connection: Connection,
    addresses: Sequence[str],
    newest: datetime,
    window_days: int,
    everything: Mapping[str, Mapping[str, HeldRole]] | None = None,
) -> set[str]:
    """Give `workstation` to hosts seen only as clients, with no service, over the window;
    return the hosts that gained or lost it.

    `everything`: every host's roles in a full derivation (see held_roles), used instead
    of reading the table (every host is then returned as changed).
    """
    table = ROLE_TABLE
    held: set[str] = set(addresses) if everything is not None else set()
    if everything is None and addresses:
        among = in_list(connection.dialect, table.c.address, addresses)
        is_workstation = among & (table.c.role == "workstation")
        held.update(connection.execute(select(table.c.address).where(is_workstation)).scalars())
        connection.execute(delete(table).where(is_workstation))
    since = newest - timedelta(days=window_days)
    serving = (
        _serving(connection, addresses, since)
        if everything is None
        else _serving(connection, None, since) & set(addresses)
    )
    rows: list[dict[str, Any]] = []
    hosts = everything if everything is not None else roles_of(connection, addresses)
    for address, roles in hosts.items():
        recent = {name: held for name, held in roles.items() if held.last_seen >= since}
        recent.pop("workstation", None)
        if address in serving or not recent or not set(recent) <= CLIENT_ROLES:
            continue
        # A derived role's evidence is the roles it rests on; they carry the observations.
        evidence = [f"role:{name}" for name in sorted(recent)]
        rows.append(
            {
                "address": address,
                "role": "workstation",
                "source": WORKSTATION_SOURCE,
                "evidence": json.dumps(evidence),
                "first_seen": min(held.first_seen for held in recent.values()),
                "last_seen": max(held.last_seen for held in recent.values()),
            }
        )
    BulkStatement(table.insert(), copy_into=table).execute(connection, rows)
    if everything is not None:
        return held
    return held ^ {row["address"] for row in rows}


def role_count(connection: Connection) -> int:
    """How many (address, role, source) roles hold."""
    return int(connection.execute(select(func.count()).select_from(ROLE_TABLE)).scalar() or 0)
