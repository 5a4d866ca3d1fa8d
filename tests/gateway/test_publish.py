"""POST /publish/{topic}: allow-listed, existing topics only; 202 after the delivery report."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from kafkarpc import protocol

from .conftest import Harness


async def test_publish_answers_202_with_partition_and_offset(harness: Harness) -> None:
    first = await harness.http.post(
        "/publish/events", content=b"one", headers={"content-type": "text/plain", "x-request-id": "r1"}
    )
    second = await harness.http.post("/publish/events?key=k", content=b"two")
    assert first.status_code == 202
    assert first.json() == {"topic": "events", "partition": 0, "offset": 0}
    assert second.json()["offset"] == 1
    records = harness.cluster.records("events")
    assert [r.value() for r in records] == [b"one", b"two"]
    assert records[1].key() == b"k"
    assert (protocol.CONTENT_TYPE, b"text/plain") in (records[0].headers() or [])
    assert ("x-request-id", b"r1") in (records[0].headers() or [])
    assert harness.metric("rpcgw_published_total", topic="events", outcome="ok") == 2


@pytest.mark.parametrize("topic", ["requests", "replies", "__consumer_offsets", "absent", "..%2Fetc"])
async def test_topics_outside_the_allow_list_or_missing_are_404_and_never_created(
    harness: Harness, topic: str
) -> None:
    response = await harness.http.post(f"/publish/{topic}", content=b"x")
    assert response.status_code == 404
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    assert "absent" not in harness.cluster.counts
    assert harness.cluster.records("requests") == []


async def test_publish_refuses_reserved_headers_and_oversized_bodies(harness: Harness) -> None:
    hostile = await harness.http.post("/publish/events", content=b"x", headers={"rpc-status": "200"})
    huge = await harness.http.post("/publish/events", content=b"x" * (harness.gateway.body_limit + 1))
    assert hostile.status_code == 400
    assert huge.status_code == 413
    assert harness.cluster.records("events") == []


async def test_publish_delivery_failure_is_a_problem(harness: Harness) -> None:
    harness.cluster.delivery_error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    response = await harness.http.post("/publish/events", content=b"x")
    assert response.status_code == 503
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    assert harness.metric("rpcgw_published_total", topic="events", outcome="unavailable") == 1
