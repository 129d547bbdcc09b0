"""Errors of cluster scans; each carries its exit status (see ``rolecall.errors``)."""

from rolecall.errors import RolecallError


class BrokerError(RolecallError):
    """The broker cannot be reached, or a chunk could not be queued there: exit status 1."""


class ClusterRunError(RolecallError):
    """A cluster scan ended partial or failed (a chunk refused or failed): exit status 1."""


def first_line(exc: BaseException) -> str:
    """What an exception says, its first line only (its type's name if it says nothing)."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__
