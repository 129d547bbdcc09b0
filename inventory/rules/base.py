"""What a finding rule is: the evidence rows it reacts to, and what it may consult.

A rule reacts to new evidence rows (``observation``, ``smtp``, ``socks``, ``connect``, ``flow``:
the finding grows with its evidence) or looks at a host's current state
(``hosts``: roles and groups; the finding is replaced, or resolved if no longer
supported). A rule over the daily series (``smtp-client-surge``) judges the days
derivation has just recomputed, and ends its own findings when the series calms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from rolecall.inventory.findings import Raised
from rolecall.inventory.matching.address_set import AddressSet
from rolecall.inventory.rules.host_roles import HeldRole
from rolecall.inventory.settings import DeriveSettings

Row = Any


@dataclass(frozen=True)
class RuleContext:
    """What rules may consult besides the row in hand."""

    connection: Connection
    settings: DeriveSettings
    inside: AddressSet
    approved_relays: AddressSet
    blocklist: AddressSet
    groups: Mapping[str, list[str]]
    newest: datetime
    # What rules looked up in the evidence tables, by a key each rule makes its own: no
    # evidence is written while a derivation runs, so an answer holds until it ends.
    answers: dict[tuple[str, ...], str] = field(default_factory=dict)

    def is_inside(self, address: str) -> bool:
        """Whether an address is inside the configured scope (never, if none is configured)."""
        return address in self.inside

    def is_approved_relay(self, address: str) -> bool:
        """Whether an address is one of the approved outside mail relays."""
        return address in self.approved_relays

    def is_blocklisted(self, address: str) -> bool:
        """Whether an address is on a configured blocklist."""
        return address in self.blocklist


@dataclass
class Collector:
    """Findings raised during one derivation, merged by (rule, address)."""

    found: dict[tuple[str, str], Raised] = field(default_factory=dict)

    def raise_(self, raised: Raised) -> None:
        """Add one raise of a finding."""
        key = (raised.rule, raised.address)
        stored = self.found.get(key)
        if stored is None:
            self.found[key] = raised
        else:
            stored.merge(raised)

    def raise_on_smtp(self, rule: str, severity: str, row: Row, summary: str) -> None:
        """Raise a finding on a mail transaction's client that rests on that transaction alone."""
        proof = [f"smtp:{row.id}"]
        self.raise_(Raised(rule, row.client, severity, summary, row.ts, row.ts, proof))

    def raise_on_observation(self, rule: str, severity: str, row: Row, summary: str) -> None:
        """Raise a finding on an observation row's host that rests on that row alone."""
        proof = [f"observation:{row.id}"]
        self.raise_(
            Raised(rule, row.address, severity, summary, row.first_seen, row.last_seen, proof)
        )


@dataclass(frozen=True)
class SeriesVerdict:
    """What a rule over the daily series concluded: findings raised, and (target, day) calm."""

    raised: Sequence[Raised] = ()
    calm: Sequence[tuple[str, date]] = ()


RowHandler = Callable[[RuleContext, Row, Collector], None]
# A host rule gets the judged hosts' current roles (address -> role -> held), read once for all.
HostHandler = Callable[[RuleContext, Mapping[str, Mapping[str, HeldRole]], Collector], None]
SeriesHandler = Callable[[RuleContext, Sequence[date]], SeriesVerdict]


@dataclass(frozen=True)
class Rule:
    """One finding rule: its id, severity, and what evidence it reacts to."""

    name: str
    severity: str
    observation_kinds: frozenset[str] = frozenset()
    observation: RowHandler | None = None
    smtp: RowHandler | None = None
    socks: RowHandler | None = None
    connect: RowHandler | None = None
    flow: RowHandler | None = None
    flow_ports: frozenset[int] | None = None
    hosts: HostHandler | None = None
    series: SeriesHandler | None = None
    applies: Callable[[RuleContext], bool] | None = None
    # Its smtp handler also reads the SOCKS and CONNECT rows of the transaction's client
    # and proxy, so a transaction is judged again when such a row arrives after it.
    smtp_reads_tunnels: bool = False

    def active(self, ctx: RuleContext) -> bool:
        """Whether the rule can raise anything with these settings (else it is skipped)."""
        return self.applies is None or self.applies(ctx)

    def judge_series(self, ctx: RuleContext, days: Sequence[date]) -> SeriesVerdict:
        """Its verdict on the series for the days just recomputed (empty if it reads none)."""
        if self.series is None or not self.active(ctx):
            return SeriesVerdict()
        return self.series(ctx, days)
