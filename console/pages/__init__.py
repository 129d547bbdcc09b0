"""The console's pages, one module each; this package is their registry.

Each module named in ``PAGE_MODULES`` has ``ROUTES``: its page and the page's
JSON twin (see ``rolecall.console.responses.twin_routes``), and any form posts.
"""

from __future__ import annotations

import importlib
from typing import Final

from starlette.routing import BaseRoute

PAGE_MODULES: Final = (
    "findings",
    "hosts",
    "search",
    "groups",
    "charts",
    "changes",
    "clusters",
)


def all_routes() -> list[BaseRoute]:
    """Every page's routes, in the order of ``PAGE_MODULES``."""
    routes: list[BaseRoute] = []
    for name in PAGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        routes += module.ROUTES
    return routes
