"""The mail-cluster view: group mail transactions by one field and list another per group."""

from __future__ import annotations

import functools
import heapq
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select

from rolecall.inventory.tables import SMTP_TABLE
from rolecall.reports.clusters.where import Condition, matches
from rolecall.reports.errors import ReportInputError
from rolecall.reports.geo import GeoInfo, GeoLookup

Values = Callable[[Any, GeoLookup], list[str]]


def _geo(part: str) -> Values:
    """Read one part of the client's geo answer."""

    def read(row: Any, geo: GeoLookup) -> list[str]:
        info: GeoInfo = geo.lookup(row.client)
        return [str(getattr(info, part))]

    return read


def _column(name: str) -> Values:
    """Read one plain column."""

    def read(row: Any, _geo: GeoLookup) -> list[str]:
        return [str(getattr(row, name))]

    return read


def _recipients(row: Any, _geo: GeoLookup) -> list[str]:
    """The accepted recipients of a transaction (a JSON list in the table)."""
    return list(recipient_list(row.rcpt_to))


@functools.lru_cache(maxsize=4096)
def recipient_list(text: str) -> tuple[str, ...]:
    """A JSON list of recipients as text; a host's mail repeats the same few lists."""
    try:
        found = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(item) for item in found) if isinstance(found, list) else ()


FIELDS: dict[str, Values] = {
    "subject": _column("subject"),
    "mail_from": _column("mail_from"),
    "rcpt": _recipients,
    "client": _column("client"),
    "server": _column("server"),
    "user_agent": _column("user_agent"),
    "helo": _column("helo"),
    "src_country": _geo("country"),
    "src_asn": _geo("asn"),
    "src_org": _geo("org"),
    "src_prefix": _geo("prefix"),
}
MEMBERS_SHOWN = 20


@dataclass(frozen=True)
class Cluster:
    """One value of the clustered field: its messages, share, and the other field's values."""

    value: str
    messages: int
    share: float
    cumulative: float
    distinct: int
    members: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterResult:
    """Every cluster of field on another field, largest first."""

    field: str
    on: str
    messages: int
    clusters: list[Cluster]

    def covering(self, share: float) -> list[Cluster]:
        """The largest clusters that together hold at least share (0-1) of the messages."""
        chosen: list[Cluster] = []
        for cluster in self.clusters:
            chosen.append(cluster)
            if cluster.cumulative >= share:
                break
        return chosen


def check_field(name: str, option: str) -> str:
    """Accept a known field name or say which ones exist."""
    if name not in FIELDS:
        raise ReportInputError(
            f"{option}: unknown field {name!r}; fields are {', '.join(sorted(FIELDS))}"
        )
    return name


def mail_columns(fields: Iterable[str]) -> tuple[str, ...]:
    """The smtp columns the fields are read from, each once, in name order."""
    return tuple(sorted({_column_of(check_field(name, "FIELD")) for name in fields}))


def _column_of(field_name: str) -> str:
    """The smtp column a cluster field is read from (geo fields: the client's address)."""
    if field_name == "rcpt":
        return "rcpt_to"
    return "client" if field_name.startswith("src_") else field_name


def _alike_mail(fields: Iterable[str], *where: Any) -> Select[Any]:
    """The mail transactions matching where, alike ones once with their ``repeats``.

    Only the fields' columns are read. A proxy's own copy of a message it relays for a
    client (``relayed_for``) is left out: the client's transaction, read inside its
    tunnel, is that message.
    """
    table = SMTP_TABLE
    columns = [table.c[name] for name in mail_columns(fields)]
    return (
        select(*columns, func.count().label("repeats"))
        .where(table.c.relayed_for == "", *where)
        .group_by(*columns)
    )


def period_mail(
    connection: Connection,
    fields: Iterable[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Any]:
    """The mail transactions of [since, until), to cluster (cluster_mail ``rows``) by fields.

    The database groups alike transactions (same values of the fields' columns): mail
    repeats itself, and a cluster counts a row as its ``repeats`` messages.
    """
    table = SMTP_TABLE
    where = []
    if since is not None:
        where.append(table.c.ts >= since)
    if until is not None:
        where.append(table.c.ts < until)
    yield from connection.execute(_alike_mail(fields, *where))


def client_mail(connection: Connection, client: str, fields: Sequence[str]) -> list[Any]:
    """One client's mail transactions, to cluster (cluster_mail ``rows``) by these fields.

    Alike rows come once with their ``repeats``; they are read by the client index alone.
    """
    return list(connection.execute(_alike_mail(fields, SMTP_TABLE.c.client == client)))


def cluster_mail(
    connection: Connection,
    field_name: str,
    on: str,
    conditions: Sequence[Condition],
    geo: GeoLookup,
    members: int = MEMBERS_SHOWN,
    since: datetime | None = None,
    until: datetime | None = None,
    rows: Iterable[Any] | None = None,
    most: int | None = None,
) -> ClusterResult:
    """Group the mail transactions matching conditions by field_name, listing on's values.

    ``rows`` are transactions already read (see client_mail), clustered instead of reading;
    a row may stand for several alike ones (its ``repeats``). With ``most``, only the
    first ``most`` clusters list their members (the rest are counted, not shown).
    """
    read_field, read_on = FIELDS[check_field(field_name, "FIELD")], FIELDS[check_field(on, "--on")]
    readers = {condition.field: FIELDS[condition.field] for condition in conditions}
    # Plain dicts of ints: this loop runs once per transaction of the whole inventory.
    counts: defaultdict[str, int] = defaultdict(int)
    others: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    total = 0
    if rows is None:
        read = {field_name, on, *readers}
        rows = period_mail(connection, read, since, until)
    for row in rows:
        if conditions:
            values = {name: read(row, geo) for name, read in readers.items()}
            if not matches(conditions, values):
                continue
        repeats = int(getattr(row, "repeats", 1))
        total += repeats
        on_values = set(read_on(row, geo))
        for value in set(read_field(row, geo)):
            counts[value] += repeats
            bucket = others[value]
            for other in on_values:
                bucket[other] += repeats
    clusters: list[Cluster] = []
    running = 0
    ordered = sorted(counts.items())  # by value, then (stable) by count, largest first
    ordered.sort(key=operator.itemgetter(1), reverse=True)
    for rank, (value, count) in enumerate(ordered):
        running += count
        listed = most is None or rank < most
        clusters.append(
            Cluster(
                value,
                count,
                count / total,
                min(running / total, 1.0),
                len(others[value]),
                heapq.nsmallest(members, others[value].items(), key=_largest_first)
                if listed
                else [],
            )
        )
    return ClusterResult(field_name, on, total, clusters)


def _largest_first(item: tuple[str, int]) -> tuple[int, str]:
    """Order (value, count) pairs by count, largest first, then by value."""
    return -item[1], item[0]


def cluster_rows(result: ClusterResult) -> Iterator[dict[str, Any]]:
    """The clusters as JSON rows: each listed value with its message count, a number."""
    for cluster in result.clusters:
        yield {
            result.field: cluster.value,
            "messages": cluster.messages,
            "share": round(cluster.share, 4),
            "cumulative": round(cluster.cumulative, 4),
            f"distinct_{result.on}": cluster.distinct,
            result.on: [{"value": value, "messages": count} for value, count in cluster.members],
        }


def cluster_csv_rows(result: ClusterResult) -> Iterator[dict[str, Any]]:
    """The clusters as CSV rows: each listed value as "value (count)" text, "(empty)" for ""."""
    for row in cluster_rows(result):
        members = row[result.on]
        row[result.on] = [f"{m['value'] or '(empty)'} ({m['messages']})" for m in members]
        yield row


def cluster_columns(result: ClusterResult) -> tuple[str, ...]:
    """The column names of cluster_rows."""
    return (result.field, "messages", "share", "cumulative", f"distinct_{result.on}", result.on)
