"""The webhook output: batches of events POSTed as ECS JSON or as Slack-compatible text.

httpx takes about 100 ms to load: each function that uses it imports it, so that loading the
config (which holds these settings) loads httpx only when it has a webhook to check.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Sequence
from typing import Final, Literal

from pydantic import Field, field_validator

from rolecall.alerts.event import AlertEvent
from rolecall.alerts.formats.controls import visible
from rolecall.alerts.formats.ecs import ecs_document
from rolecall.alerts.outputs.common import AlertOutput, Delivered, DeliveryError, OutputSettings
from rolecall.alerts.outputs.trust import CaFile, verifying_context

HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
SLACK_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
MAX_BACKOFF: Final = 300.0


class Settings(OutputSettings):
    """An `[[alerts]]` entry of type "webhook"."""

    type: Literal["webhook"]
    url: str = Field(min_length=1)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=10)
    """Further tries after a connection error, a 5xx or a 429."""
    backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    """The wait before the first retry; it doubles before each next one."""
    ca_file: CaFile = ""
    """https: trust this file's CAs instead of the system's."""
    style: Literal["json", "slack"] = "json"
    batch_size: int = Field(default=100, ge=1, le=10_000)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An absolute http or https URL with a host."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("headers")
    @classmethod
    def _clean_headers(cls, value: dict[str, str]) -> dict[str, str]:
        """Header names are HTTP tokens; values hold no line breaks or other controls."""
        for name, text in value.items():
            if not HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if visible(text) != text:
                raise ValueError(f"header {name} holds a control character")
        return value

    @property
    def where(self) -> str:
        """The receiver as a sentence names it: scheme, host and port, never the path's secrets."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        url = httpx.URL(self.url)
        port = f":{url.port}" if url.port else ""
        return f"webhook {url.scheme}://{url.host}{port}"


def slack_text(events: Sequence[AlertEvent]) -> str:
    """One line per event, &, < and > escaped as Slack requires, so no text becomes a mention."""
    lines = (
        f"[{event.severity}] {event.action}: {event.rule} on {event.address}: {event.summary}"
        for event in events
    )
    return "\n".join(visible(line).translate(SLACK_ESCAPES) for line in lines)


def body(events: Sequence[AlertEvent], style: str) -> bytes:
    """The POST body of one batch: a JSON array of ECS documents, or Slack's {"text": ...}."""
    payload: object
    if style == "slack":
        payload = {"text": slack_text(events)}
    else:
        payload = [ecs_document(event) for event in events]
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")


def _certificate_refused(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error beneath an httpx error, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class WebhookOutput:
    """An HTTP client kept open between deliveries (keep-alive), verifying TLS."""

    def __init__(self, settings: Settings, context: ssl.SSLContext) -> None:
        """Keep the settings and open the client; nothing is connected yet."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        self._settings = settings
        self._client = httpx.Client(
            verify=context,
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            headers={"Content-Type": "application/json", **settings.headers},
        )

    def deliver(self, events: Sequence[AlertEvent]) -> Delivered:
        """POST the events in batches, in order; stop at the first batch that was not taken."""
        size = self._settings.batch_size
        for start in range(0, len(events), size):
            error = self._post(body(events[start : start + size], self._settings.style))
            if error is not None:
                return Delivered(start, f"{self._settings.where}: {error}")
        return Delivered(len(events))

    def _post(self, content: bytes) -> str | None:
        """POST one batch, retrying with back-off; None once taken, else why not."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        settings = self._settings
        error = ""
        for attempt in range(settings.retries + 1):
            if attempt:
                time.sleep(min(settings.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF))
            try:
                response = self._client.post(settings.url, content=content)
            except httpx.HTTPError as exc:
                refused = _certificate_refused(exc)
                if refused is not None:
                    return f"its certificate is not trusted ({refused.verify_message})"
                if isinstance(exc, httpx.TimeoutException):
                    error = f"no answer within {settings.timeout_seconds:g} s"
                else:
                    error = str(exc) or type(exc).__name__
                continue
            if response.is_success:
                return None
            error = f"answered {response.status_code} {response.reason_phrase}".rstrip()
            if response.status_code < 500 and response.status_code != 429:
                return error
        tries = settings.retries + 1
        return f"{error} (after {tries} {'try' if tries == 1 else 'tries'})"

    def close(self) -> None:
        """Close the client and its connections."""
        self._client.close()


def open_output(settings: Settings) -> AlertOutput:
    """The webhook output for these settings; DeliveryError for settings it cannot use."""
    import httpx  # noqa: PLC0415 - see the module's docstring

    if settings.ca_file and httpx.URL(settings.url).scheme != "https":
        raise DeliveryError(f"alerts {settings.name}: ca_file is set but the url is not https")
    return WebhookOutput(settings, verifying_context(settings.ca_file, f"alerts {settings.name}"))
