"""The groups page and its JSON twin: each group's size and the hosts of it that send SMTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute

from rolecall.console.context import context_of
from rolecall.console.responses import twin_routes
from rolecall.inventory.groups import UNGROUPED, group_sizes, mail_clients_by_group


def groups_data(request: Request) -> Mapping[str, Any]:
    """Every group with mail clients (as `groups mail-clients` lists them), then the others.

    A row: group, count and addresses of its SMTP clients, and members (the group's size).
    """
    context = context_of(request)
    with context.read("list the groups and their mail clients") as connection:
        clients = mail_clients_by_group(connection)
        sizes = group_sizes(connection)
    rows = [
        {
            "group": item.group,
            "count": item.count,
            "addresses": item.addresses,
            "members": sizes.get(item.group, 0),
        }
        for item in clients
    ]
    listed = {item.group for item in clients}
    declared = [entry.name for entry in context.config.groups]
    rows += [
        {"group": name, "count": 0, "addresses": [], "members": sizes.get(name, 0)}
        for name in [*declared, UNGROUPED]
        if name not in listed and (name != UNGROUPED or sizes.get(name))
    ]
    return {"groups": rows, "configured": declared}


ROUTES: list[BaseRoute] = list(twin_routes("/groups", groups_data, "groups.html.j2", "groups"))
