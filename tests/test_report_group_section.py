"""The report's email-clients-per-group section: whole counts, the first hosts of each group."""

from __future__ import annotations

from datetime import timedelta

from rolecall.inventory.groups import UNGROUPED, mail_clients_by_group, update_groups
from rolecall.inventory.settings import GroupSpec
from rolecall.inventory.store import Store
from rolecall.inventory.tables import ASSET_TABLE, ROLE_TABLE
from rolecall.reports.build import ReportSettings, build_report
from rolecall.reports.geo import GeoLookup
from tests.report_helpers import SINCE, UNTIL

LIMIT = 10  # the smallest report.html_rows the config takes
SPECS = (
    GroupSpec("lab", networks=("10.1.0.0/16",)),
    GroupSpec("Office", networks=("10.1.2.0/24", "10.2.0.0/16")),
    # A configured group may be called what the report calls hosts in no group.
    GroupSpec(UNGROUPED, addresses=("10.3.0.1", "10.3.0.2")),
)
# Addresses whose code point order is not their numeric order ("10.1.2.100" < "10.1.2.9").
CLIENTS = [
    *(f"10.1.2.{index}" for index in range(1, 16)),
    *(f"10.1.3.{index}" for index in (5, 50, 100)),
    *(f"10.2.0.{index}" for index in range(7, 20)),
    *(f"10.3.0.{index}" for index in range(1, 15)),
]
OTHERS = ["10.1.9.1", "10.2.9.1", "10.3.9.1"]  # in groups, but sending no mail


def _fill(db: str) -> None:
    """Mail clients (one seen by two sources) and other hosts, in groups and in none."""
    seen = UNTIL - timedelta(days=1)
    rows = [(address, "smtp-client", "probe") for address in CLIENTS]
    rows += [("10.1.2.3", "smtp-client", "zeek")]
    rows += [(address, "workstation", "probe") for address in [*CLIENTS, *OTHERS]]
    store = Store.open(db)
    with store.transaction("fill the inventory") as connection:
        connection.execute(
            ASSET_TABLE.insert(),
            [
                {"address": address, "first_seen": seen, "last_seen": seen}
                for address in [*CLIENTS, *OTHERS]
            ],
        )
        connection.execute(
            ROLE_TABLE.insert(),
            [
                {
                    "address": address,
                    "role": role,
                    "source": source,
                    "evidence": "[]",
                    "first_seen": seen,
                    "last_seen": seen,
                }
                for address, role, source in rows
            ],
        )
        update_groups(connection, [*CLIENTS, *OTHERS], SPECS)
    store.close()


def test_group_section_counts_whole_groups_and_lists_their_first_hosts(database: str) -> None:
    _fill(database)
    store, geo = Store.open(database), GeoLookup()
    with store.read("read the groups") as connection:
        full = mail_clients_by_group(connection)
        shown = build_report(connection, ReportSettings(row_limit=LIMIT), SINCE, UNTIL, geo)
    geo.close()
    store.close()
    assert {item.group for item in full} == {"lab", "Office", UNGROUPED}
    assert any(item.count > LIMIT for item in full)
    assert [(target.group, target.count) for target in shown.group_hosts] == [
        (item.group, item.count) for item in full
    ]
    assert [target.addresses for target in shown.group_hosts] == [
        sorted(item.addresses)[:LIMIT] for item in full
    ]
    assert [bar.label for bar in shown.groups_chart.bars] == [item.group for item in full]
