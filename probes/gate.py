"""The scope gate every probe passes each target through before sending a packet."""

from typing import Protocol

from rolecall.errors import BadInputError


class TargetGate(Protocol):
    """Decides whether an address may be probed (``rolecall.orchestrator.scope.Scope``)."""

    def admit(self, address: str) -> None:
        """Return if ``address`` may be probed, else raise ``OutOfScopeError``."""


class OutOfScopeError(BadInputError):
    """A target lies outside the configured scope: refused before any packet is sent (exit 2)."""


class NetworkGate(Protocol):
    """Decides whether a whole network may be scanned; implemented by the scope."""

    def admit_network(self, network: str) -> None:
        """Return if every address of network may be probed, else raise OutOfScopeError."""
