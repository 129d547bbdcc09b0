"""Errors the report renderers raise; the orchestrator maps them to exit status."""


class ReportInputError(Exception):
    """Bad input to a report (an expression, a database file, a template): one sentence."""


class DeliveryError(Exception):
    """The relay refused the report or could not be reached: one sentence."""
