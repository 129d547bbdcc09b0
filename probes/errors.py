"""Errors probes and readers raise; each carries its exit status (see ``rolecall.errors``)."""

from rolecall.errors import BadInputError, RolecallError


class InputError(BadInputError):
    """Input that cannot be read or parsed (a file, a target): exit status 2."""


class ProbeError(RolecallError):
    """A probe could not run (a tool missing, a socket error): exit status 1."""
