"""Errors the inventory raises; the command line maps them to exit status."""


class StoreError(Exception):
    """The database cannot be opened or used as an inventory: exit status 2."""
