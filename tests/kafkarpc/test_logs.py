"""The two log formats, the librdkafka route, and the choice between them."""

from __future__ import annotations

import io
import logging
import re
import sys

import orjson
import pytest

from kafkarpc import logs
from kafkarpc.logs import ConsoleFormatter, ExpectedRetries, JsonFormatter, configure_logging, correlation_id


def record(message: str = "hi %s", level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    entry = logging.makeLogRecord(
        {"name": "gateway", "levelno": level, "levelname": logging.getLevelName(level), "msg": message}
    )
    entry.args = ("there",) if "%s" in message else ()
    entry.__dict__.update(extra)
    return entry


def test_json_logs_carry_the_correlation_id_and_extras() -> None:
    token = correlation_id.set("ab" * 16)
    try:
        entry = orjson.loads(JsonFormatter().format(record(method="echo", color_message="\x1b[36mhi")))
    finally:
        correlation_id.reset(token)
    assert entry["message"] == "hi there"
    assert entry["correlation_id"] == "ab" * 16
    assert entry["method"] == "echo"

    assert "color_message" not in entry


def test_console_lines_are_short_and_keep_the_extras() -> None:
    token = correlation_id.set("ab" * 16)
    try:
        line = ConsoleFormatter().format(record(port=8080, settings={"x": "y" * 500}))
    finally:
        correlation_id.reset(token)
    head, _, tail = line.partition(": hi there  ")
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO {4}gateway", head)
    fields = tail.split("  ")
    assert fields[:2] == ["correlation_id=" + "ab" * 16, "port=8080"]
    assert fields[2].startswith('settings={"x":"yyy')
    assert fields[2].endswith("…")
    assert len(fields[2]) == len("settings=") + 120


def test_the_expected_idempotence_retry_of_a_starting_broker_is_info() -> None:
    line = "GETPID [p#producer-1] [thrd:main]: Failed to acquire idempotence PID from broker b/1: retrying"
    expected = record(line, logging.WARNING)
    assert ExpectedRetries().filter(expected)
    assert (expected.levelno, expected.levelname) == (logging.INFO, "INFO")
    other = record(
        "FAIL [p#producer-1]: Connect to ipv4#127.0.0.1:9092 failed: Connection refused", logging.WARNING
    )
    assert ExpectedRetries().filter(other)
    assert other.levelno == logging.WARNING


@pytest.mark.parametrize(
    ("log_format", "tty", "console"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("json", True, False),
        ("console", False, True),
    ],
)
def test_the_format_follows_the_setting_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch, log_format: logs.LogFormat, tty: bool, console: bool
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", log_format)
        logging.getLogger("gateway").info("hello", extra={"port": 1})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    written = stream.getvalue().strip()
    assert written.startswith("{") is not console
    assert any(isinstance(f, ExpectedRetries) for f in logs.LIBRDKAFKA.filters)
