"""Errors the report renderers raise; each carries its exit status (see ``rolecall.errors``)."""

from rolecall.errors import BadInputError, RolecallError


class ReportInputError(BadInputError):
    """Bad input to a report (an expression, a database file, a template): exit status 2."""


class DeliveryError(RolecallError):
    """The relay refused the report or could not be reached: exit status 1."""
