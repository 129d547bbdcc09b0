"""The daemon's structured log: one JSON object per line, to stderr or a file."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolecall.inventory.exports import iso
from rolecall.orchestrator.errors import UsageError
from rolecall.terminal_text import json_terminal_safe

LOGGER_NAME = "rolecall.daemon"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR


class JsonLines(logging.Formatter):
    """Formats a record as one JSON line: ts, level, event, and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render record; messages of other loggers (APScheduler) become event "library"."""
        fields: dict[str, Any] = getattr(record, "fields", {})
        event = record.getMessage() if record.name == LOGGER_NAME else "library"
        line: dict[str, Any] = {
            "ts": iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "event": event,
        }
        if record.name != LOGGER_NAME:
            line["logger"] = record.name
            line["message"] = record.getMessage()
        line.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        # Fields quote input (paths, nmap's messages): no raw DEL, C1 or bidi reaches a terminal.
        return json_terminal_safe(json.dumps(line, default=str, ensure_ascii=False))


def configure_logging(log_file: str, level: str) -> logging.Logger:
    """Send the daemon's and APScheduler's events to log_file (or stderr) as JSON lines."""
    try:
        handler: logging.Handler = (
            logging.FileHandler(Path(log_file).expanduser(), encoding="utf-8")
            if log_file
            else logging.StreamHandler(sys.stderr)
        )
    except OSError as exc:
        raise UsageError(f"cannot open daemon log file {log_file}: {exc.strerror}") from None
    handler.setFormatter(JsonLines())
    logger = logging.getLogger(LOGGER_NAME)
    library = logging.getLogger("apscheduler")
    for target in (logger, library):
        for old in list(target.handlers):
            target.removeHandler(old)
            old.close()
        target.addHandler(handler)
        target.propagate = False
    logger.setLevel(LEVELS[level])
    library.setLevel(max(LEVELS[level], logging.WARNING))
    return logger


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields."""
    logger.log(level, name, extra={"fields": fields})


def close_logging() -> None:
    """Flush and close the daemon's log handlers."""
    for name in (LOGGER_NAME, "apscheduler"):
        target = logging.getLogger(name)
        for old in list(target.handlers):
            target.removeHandler(old)
            old.close()
