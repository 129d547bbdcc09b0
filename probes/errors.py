"""Errors probes and readers raise; the command line maps them to exit status."""


class InputError(Exception):
    """Input that cannot be read or parsed (a file, a target): exit status 2."""


class ProbeError(Exception):
    """A probe could not run (a tool missing, a socket error): exit status 1."""
