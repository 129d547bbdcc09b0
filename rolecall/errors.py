"""The root of every error rolecall raises on purpose, and the exit status each one means.

The command line prints such an error as its one sentence and exits with its
``exit_status``; anything else is an internal error.
"""

from __future__ import annotations

from typing import ClassVar


class RolecallError(Exception):
    """An error rolecall expects and explains in one sentence: exit status 1."""

    exit_status: ClassVar[int] = 1


class BadInputError(RolecallError):
    """Bad usage or bad input (a config, a target, a file, a database): exit status 2."""

    exit_status: ClassVar[int] = 2
