"""Errors the orchestrator raises; the command line maps them to exit status."""


class UsageError(Exception):
    """Bad usage or bad input (config, targets, files): exit status 2."""


class RunError(Exception):
    """A run that could not complete for another reason (a tool missing, a peer down): exit 1."""
