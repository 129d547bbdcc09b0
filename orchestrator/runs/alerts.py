"""Alert delivery as the command line and the daemon run it: after every derivation."""

from __future__ import annotations

from collections.abc import Callable

from rolecall.alerts.delivery import Opener, OutputResult, deliver
from rolecall.alerts.outputs.common import AlertOutput, OutputSettings
from rolecall.alerts.outputs.email import MailRelay
from rolecall.alerts.outputs.registry import open_output
from rolecall.errors import RolecallError
from rolecall.inventory.store import Store
from rolecall.orchestrator.config import Config
from rolecall.orchestrator.errors import UsageError
from rolecall.orchestrator.settings import relay_settings


def opener(config: Config) -> Opener:
    """Opens the configured outputs; email ones through the config's `[email]` relay."""

    def mail() -> MailRelay:
        return MailRelay(relay_settings(config), config.email.sender, tuple(config.email.to))

    def open_configured(settings: OutputSettings) -> AlertOutput:
        return open_output(settings, mail)

    return open_configured


def output_named(config: Config, name: str) -> OutputSettings:
    """The `[[alerts]]` entry of this name; UsageError naming the known ones if none."""
    for settings in config.alerts:
        if settings.name == name:
            return settings
    known = ", ".join(settings.name for settings in config.alerts) or "none is configured"
    raise UsageError(f"no alert output named {name!r} in [[alerts]] ({known})")


def waiting_message(result: OutputResult) -> str:
    """One sentence for an output that could not take its events."""
    return f"rolecall: alerts {result.name}: events wait for the receiver: {result.error}"


def deliver_configured(
    store: Store, config: Config, warn: Callable[[str], None]
) -> list[OutputResult]:
    """Send each configured output its waiting events; a failure is a warning, never raised."""
    if not config.alerts:
        return []
    try:
        results = deliver(store, config.alerts, opener(config))
    except RolecallError as exc:
        warn(f"rolecall: alerts: events wait: {exc}")
        return []
    for result in results:
        if result.error is not None:
            warn(waiting_message(result))
    return results


def deliver_after_derive(
    store: Store, config: Callable[[], Config], warn: Callable[[str], None]
) -> None:
    """Deliver the alerts of the config current at the time, after every derivation."""
    store.after_derive(lambda: _ignore(deliver_configured(store, config(), warn)))


def _ignore(_results: list[OutputResult]) -> None:
    """Drop a delivery's results (the warnings were given)."""
