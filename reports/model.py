"""What a report holds once read from the inventory: plain data the templates render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rolecall.reports.charts import BarChart, LineChart
from rolecall.reports.clusters.view import ClusterResult
from rolecall.reports.queries import FindingItem, HostDetail, ServerSeen, SoftwareSeen


@dataclass(frozen=True)
class ChangesView:
    """What changed in the period: lists are cut to the report's row limit, counts are whole."""

    new_assets: list[str] = field(default_factory=list)
    new_roles: list[str] = field(default_factory=list)
    lost_roles: list[str] = field(default_factory=list)
    new_findings: list[FindingItem] = field(default_factory=list)
    resolved_findings: list[FindingItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupHosts:
    """An asset group's email clients, the target the bar chart links to."""

    anchor: str
    group: str
    addresses: list[str]
    count: int


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows."""

    title: str
    since: str
    until: str
    generated: str
    assets: int
    roles: list[tuple[str, int]]
    groups: list[tuple[str, int]]
    open_by_severity: dict[str, int]
    changes: ChangesView
    findings: list[FindingItem]
    findings_total: int
    hosts: list[HostDetail]
    clients_chart: LineChart
    connections_chart: LineChart
    groups_chart: BarChart
    group_hosts: list[GroupHosts]
    software: list[SoftwareSeen]
    servers: list[ServerSeen]
    clusters: list[ClusterResult]
    inventory: list[dict[str, Any]]
    row_limit: int

    @property
    def open_total(self) -> int:
        """Open findings of every severity."""
        return sum(self.open_by_severity.values())

    @property
    def new_findings(self) -> int:
        """Findings first seen in the period."""
        return self.changes.counts.get("new_findings", len(self.changes.new_findings))
