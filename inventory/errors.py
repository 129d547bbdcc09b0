"""Errors the inventory raises; each carries its exit status (see ``rolecall.errors``)."""

from rolecall.errors import BadInputError


class StoreError(BadInputError):
    """The database cannot be opened or used as an inventory: exit status 2."""
