"""The broker: reachable or not, named without its password."""

from __future__ import annotations

from kombu.connection import Connection
from kombu.utils.url import maybe_sanitize_url

from rolecall.cluster.errors import BrokerError, first_line

CONNECT_SECONDS = 5.0


def broker_name(url: str) -> str:
    """The broker URL as it may be shown: any password masked."""
    return str(maybe_sanitize_url(url))


def check_broker(url: str) -> None:
    """Return if the broker answers within a few seconds, else raise BrokerError saying so."""
    try:
        # kombu's Connection takes untyped arguments.
        with Connection(url, connect_timeout=CONNECT_SECONDS) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_SECONDS)
    except Exception as exc:  # kombu raises the transport's own errors, whatever they are
        raise BrokerError(
            f"cannot reach the broker {broker_name(url)} ([cluster] broker): {first_line(exc)}"
        ) from None
