"""Smoke run of the streams benchmark against the real stack: a broker and ONE gateway.

A few hundred subscribers and a few records; the figures are not judged against targets
(CI machines are noisy), only that every subscriber got every record and that every
figure the report publishes is present and physically possible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.streams import SMOKE_RECORDS, SMOKE_SUBSCRIBERS, WARMUP_RECORDS
from tests.bench.smoke import run_smoke


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return run_smoke("bench.streams", "streams", tmp_path_factory.mktemp("bench-streams"))


@pytest.mark.integration
def test_every_subscriber_got_every_record_once_and_in_order(report: tuple[Path, dict[str, Any]]) -> None:
    document = report[1]
    assert document["setup"]["subscribers"] == SMOKE_SUBSCRIBERS
    assert document["setup"]["records"] == SMOKE_RECORDS
    delivery = document["delivery"]
    assert delivery["subscribers"] == delivery["gauge_connected"] == SMOKE_SUBSCRIBERS
    for problem in ("missing", "duplicates", "out_of_order_subscribers", "overflowed", "lost_early"):
        assert delivery[problem] == 0, delivery
    assert delivery["late_records"] == 0
    assert delivery["produce_failures"] == []
    assert delivery["gauge_after_disconnect"] == 0
    assert delivery["complete"] is True


@pytest.mark.integration
def test_each_record_reached_everyone_first_before_last(report: tuple[Path, dict[str, Any]]) -> None:
    rows = report[1]["delays"]
    # The warm-up record is checked for delivery above but kept out of the delays.
    assert [row["seq"] for row in rows] == list(range(WARMUP_RECORDS, WARMUP_RECORDS + SMOKE_RECORDS))
    for row in rows:
        assert row["received"] == SMOKE_SUBSCRIBERS, row
        # Positive (produced before it arrived) and below the bench's own give-up time.
        assert 0 < row["first_ms"] <= row["median_ms"] <= row["last_ms"] < 60_000, row


@pytest.mark.integration
def test_figures_are_present_and_plausible(report: tuple[Path, dict[str, Any]]) -> None:
    figures = report[1]["figures"]
    for key in ("delay_first_ms", "delay_median_subscriber_ms", "delay_last_ms"):
        spread = figures[key]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"], (key, spread)
    assert figures["delay_first_ms"]["median"] <= figures["delay_last_ms"]["median"]
    rss = figures["gateway_rss_mib"]
    # A Python process with FastAPI and librdkafka loaded: tens of MiB, never gigabytes.
    assert 20 < rss["idle"] < 1_000, rss
    # Holding the subscribers (and the topic's consumer they started) costs memory.
    assert rss["connected"] > rss["idle"], rss
    assert rss["after_disconnect"] > 0, rss
    # Clock ticks are 10 ms: connecting 200 streams and fanning out costs at least one.
    assert figures["gateway_cpu_us_per_connect"] > 0
    assert figures["gateway_cpu_ms_per_record"] > 0
    assert figures["connect_seconds"] > 0
    assert set(figures["gateway_full_gcs"]) == {"idle", "connect", "held", "fan_out", "disconnect"}


@pytest.mark.integration
def test_markdown_summarises_the_run(report: tuple[Path, dict[str, Any]]) -> None:
    text = (report[0] / "streams-smoke.md").read_text()
    assert f"# Streams: {SMOKE_SUBSCRIBERS} SSE subscribers on one topic" in text
    assert "Every subscriber received every record: **yes**" in text
    assert "| last subscriber |" in text
    for row in report[1]["delays"]:  # the per-record table
        assert f"\n| {row['seq']} | {row['first_ms']} | {row['median_ms']} | {row['last_ms']} |" in text
