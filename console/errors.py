"""The console's errors: a request it cannot answer, said in one sentence."""

from __future__ import annotations

from rolecall.errors import BadInputError


class RequestError(BadInputError):
    """A request with a parameter the console cannot use (HTTP 400), or for nothing (404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        """Keep the sentence and the HTTP status it answers with."""
        super().__init__(message)
        self.status = status
