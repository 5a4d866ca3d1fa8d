"""Logs of both processes: JSON lines in production, short lines on a terminal, one shape.

Every record carries the request's correlation id (a context variable) and the ``extra``
fields it was logged with. librdkafka's own lines reach Python logging through the
`LIBRDKAFKA` logger (`kafkarpc.clients` configures every client with it), where
`ExpectedRetries` lowers the warnings librdkafka prints for retries that are expected
while a broker starts.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

import orjson

LogFormat = Literal["auto", "json", "console"]
"""``json`` for machines, ``console`` for people, ``auto``: console on a terminal, else JSON."""

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
"""Set while a request is being handled; each handler task has its own context."""

LIBRDKAFKA = logging.getLogger("librdkafka")
"""The logger librdkafka writes through (confluent-kafka's ``logger`` property)."""

# LogRecord attributes that are not user-supplied ``extra`` fields (uvicorn's ``color_message``
# repeats the message with terminal colour codes).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# Longest extra value a console line shows; the JSON line keeps it whole.
_CONSOLE_VALUE_MAX = 120
# librdkafka warnings about retries it makes on its own while a broker is starting (an idempotent
# producer asks for its producer id before the broker can hand one out); outages are reported
# separately, through error_cb, so lowering these hides nothing.
_EXPECTED = ("Failed to acquire idempotence PID",)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and key[0] != "_"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, correlation id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = correlation_id.get()
        if current is not None:
            entry["correlation_id"] = current
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """A record as one short line: ``12:00:01 INFO  gateway: message  key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        parts = [f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"]
        current = correlation_id.get()
        if current is not None:
            parts.append(f"correlation_id={current}")
        for key, value in _extras(record).items():
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            if len(text) > _CONSOLE_VALUE_MAX:
                text = text[: _CONSOLE_VALUE_MAX - 1] + "…"
            parts.append(f"{key}={text}")
        line = "  ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class ExpectedRetries(logging.Filter):
    """Lowers librdkafka's warnings about retries that are expected while brokers start to INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and any(text in record.getMessage() for text in _EXPECTED):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    """Send every log record (uvicorn's and librdkafka's included) to stderr at ``level``."""
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter() if console else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    if not any(isinstance(existing, ExpectedRetries) for existing in LIBRDKAFKA.filters):
        LIBRDKAFKA.addFilter(ExpectedRetries())
