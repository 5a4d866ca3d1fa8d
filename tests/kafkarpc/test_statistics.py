"""Consumer lag from librdkafka's statistics document."""

from __future__ import annotations

import orjson

from kafkarpc.statistics import consumer_lag


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
    assert consumer_lag(statistics) == 7


def test_delivered_lag_counts_from_what_was_handed_to_the_application() -> None:
    statistics = orjson.dumps(
        {
            "topics": {
                "replies": {
                    "partitions": {
                        "0": {"fetch_state": "active", "ls_offset": 120, "app_offset": 100},
                        "1": {"fetch_state": "active", "ls_offset": 50, "app_offset": -1001},
                    }
                }
            }
        }
    )
    assert consumer_lag(statistics, since="delivered") == 20
