"""Small pieces: dead-letter headers, JSON logs, consumer lag, reply conversions."""

from __future__ import annotations

import logging

import orjson

from kafkarpc.logs import JsonFormatter, correlation_id
from kafkarpc.protocol import DEAD_LETTER_DETAIL, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE
from kafkarpc.statistics import consumer_lag as lag_from_statistics
from workers.deadletter import Reason, dead_letter


def test_dead_letters_keep_the_record_and_drop_forged_dead_letter_headers() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("x-a", b"1"),
        ("rpc-dead-letter-reason", b"forged"),
        ("x-a", None),
    ]
    letter = dead_letter(b"k", b"v", headers, reason=Reason.UNKNOWN_METHOD, source="requests/1/2", detail="d")
    assert (letter.key, letter.value) == (b"k", b"v")
    assert letter.headers == [
        ("x-a", b"1"),
        ("x-a", None),
        (DEAD_LETTER_REASON, b"unknown-method"),
        (DEAD_LETTER_SOURCE, b"requests/1/2"),
        (DEAD_LETTER_DETAIL, b"d"),
    ]


def test_json_logs_carry_the_correlation_id_and_extras() -> None:
    record = logging.makeLogRecord({"name": "w", "levelname": "INFO", "msg": "hi %s", "args": ("there",)})
    record.method = "echo"
    token = correlation_id.set("ab" * 16)
    try:
        entry = orjson.loads(JsonFormatter().format(record))
    finally:
        correlation_id.reset(token)
    assert entry["message"] == "hi there"
    assert entry["correlation_id"] == "ab" * 16
    assert entry["method"] == "echo"


def test_lag_sums_active_partitions_and_ignores_unknown() -> None:
    statistics = orjson.dumps(
        {
            "topics": {
                "requests": {
                    "partitions": {
                        "0": {"fetch_state": "active", "consumer_lag": 5},
                        "1": {"fetch_state": "active", "consumer_lag": -1},
                        "2": {"fetch_state": "none", "consumer_lag": 50},
                        "-1": {"fetch_state": "none", "consumer_lag": 7},
                        "3": {"fetch_state": "active", "consumer_lag": 2},
                    }
                }
            }
        }
    )
    assert lag_from_statistics(statistics) == 7
