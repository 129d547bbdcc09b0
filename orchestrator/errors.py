"""Errors the orchestrator raises; each carries its exit status (see ``rolecall.errors``)."""

from rolecall.errors import BadInputError, RolecallError


class UsageError(BadInputError):
    """Bad usage or bad input (config, targets, files): exit status 2."""


class RunError(RolecallError):
    """A run that could not complete for another reason (a tool missing, a peer down): exit 1."""
