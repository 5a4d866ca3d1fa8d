"""`ResultLookup` over the in-memory cluster: finding one reply among everyone's, and no more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from gateway.errors import KafkaUnavailableError, NotAcceptingError
from gateway.locations import ResultHandle
from gateway.lookup import ResultLookup
from kafkarpc import protocol
from kafkarpc.clients import Message
from tests.fakekafka import FakeConsumer, FakeKafka

TOPIC = "replies"
OURS = "0123456789abcdef0123456789abcdef"


class RetainedKafka(FakeKafka):
    """`FakeKafka` whose partitions can lose their oldest records (``log_start``), and whose
    consumers remember every record they handed over."""

    def __init__(self, topics: dict[str, int]) -> None:
        super().__init__(topics)
        self.log_start: dict[tuple[str, int], int] = {}
        self.handed: list[int] = []

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        return RetainedConsumer(self, config)


class RetainedConsumer(FakeConsumer):
    kafka: RetainedKafka

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        batch = super().consume(num_messages, timeout)
        self.kafka.handed.extend(message.offset() or 0 for message in batch)
        return batch

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int] | None:
        watermarks = super().get_watermark_offsets(partition, timeout, cached)
        if watermarks is None:
            return None
        return self.kafka.log_start.get((partition.topic, partition.partition), 0), watermarks[1]


def other_id(n: int) -> str:
    return f"{n:032x}"


def put(cluster: FakeKafka, reply: protocol.Reply, partition: int = 0) -> int:
    """Write ``reply`` to the reply topic; its offset."""
    return cluster.append(TOPIC, reply.body, headers=reply.headers(), partition=partition).offset() or 0


def others(cluster: FakeKafka, count: int, partition: int = 0) -> None:
    for n in range(count):
        put(cluster, protocol.Reply(other_id(n + 1), 200, b"{}"), partition)


def part(sequence: int, body: bytes = b"{}", *, final: bool = False, status: int = 200) -> protocol.Reply:
    return protocol.Reply(OURS, status, body, "application/json", sequence=sequence, final=final)


def handle(offset: int = 0, partition: int = 0) -> ResultHandle:
    return ResultHandle(partition, offset, OURS, None, int((time.time() + 60) * 1000))


@pytest.fixture
def cluster() -> RetainedKafka:
    return RetainedKafka({TOPIC: 2})


@pytest.fixture
async def lookup(cluster: RetainedKafka) -> AsyncIterator[ResultLookup]:
    finder = ResultLookup(cluster, {"group.id": "g"}, TOPIC, readers=2, scan_limit=1_000, timeout=1.0)
    yield finder
    await finder.close()


async def test_finds_its_reply_among_other_requests_replies(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 3)
    reply = protocol.Reply(OURS, 201, b'{"id": 7}', response_headers={"location": "/orders/7"})
    at = put(cluster, reply)
    others(cluster, 3)
    found = await lookup.find(handle(), 0)
    assert found.complete
    assert found.parts == [reply]
    assert max(cluster.handed) < 500  # read in batches, but never past what is there
    assert at == 3


async def test_reads_no_record_before_the_handles_offset(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    put(cluster, protocol.Reply(OURS, 200, b"old"))  # an id reused before the request: not ours
    others(cluster, 2)
    found = await lookup.find(handle(offset=1), 0)
    assert not found.complete
    assert found.parts == []
    assert min(cluster.handed) >= 1


async def test_reads_the_handles_partition_only(cluster: RetainedKafka, lookup: ResultLookup) -> None:
    put(cluster, protocol.Reply(OURS, 200, b"elsewhere"), partition=1)
    assert not (await lookup.find(handle(partition=0), 0)).complete
    assert (await lookup.find(handle(partition=1), 0)).complete


async def test_finds_a_streams_parts_and_end_in_order(cluster: RetainedKafka, lookup: ResultLookup) -> None:
    put(cluster, part(0, b"[0]"))
    others(cluster, 1)
    put(cluster, part(1, b"[1]"))
    put(cluster, part(1, b"[1]"))  # a retried produce wrote it twice
    others(cluster, 1)
    put(cluster, part(2, b"", final=True))
    found = await lookup.find(handle(), 0)
    assert found.complete
    assert found.ended
    assert [(p.sequence, p.body, p.final) for p in found.parts] == [
        (0, b"[0]", False),
        (1, b"[1]", False),
        (2, b"", True),
    ]


async def test_a_stream_without_its_end_is_pending_and_resumes_at_its_first_part(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 2)
    first = put(cluster, part(0))
    put(cluster, part(1))
    others(cluster, 2)
    found = await lookup.find(handle(), 0)
    assert not found.complete
    assert not found.ended
    assert [p.sequence for p in found.parts] == [0, 1]
    assert found.next_offset == first  # a later lookup must see the parts again
    assert found.caught_up


async def test_an_end_with_parts_missing_is_ended_but_not_complete(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    put(cluster, part(0))
    put(cluster, part(2, final=True))
    found = await lookup.find(handle(), 0)
    assert found.ended
    assert not found.complete


async def test_nothing_yet_is_pending_with_the_next_offset_past_what_was_read(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 5)
    found = await lookup.find(handle(offset=2), 0)
    assert (found.complete, found.gone, found.caught_up, found.next_offset) == (False, False, True, 5)
    assert found.parts == []


async def test_an_empty_partition_is_answered_without_fetching(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    found = await lookup.find(handle(), 0)
    assert (found.complete, found.caught_up, found.next_offset) == (False, True, 0)
    assert cluster.calls["consume"] == 0


async def test_the_scan_limit_is_honoured_and_the_next_lookup_resumes(cluster: RetainedKafka) -> None:
    others(cluster, 10)
    at = put(cluster, protocol.Reply(OURS, 200, b"late"))
    finder = ResultLookup(cluster, {}, TOPIC, readers=1, scan_limit=4, timeout=1.0)
    try:
        found = await finder.find(handle(), 0)
        assert (found.complete, found.caught_up, found.next_offset) == (False, False, 4)
        assert sorted(cluster.handed) == [0, 1, 2, 3]  # not one record more
        found = await finder.find(handle(found.next_offset), 0)
        assert found.next_offset == 8
        cluster.handed.clear()
        found = await finder.find(handle(found.next_offset), 0)
        assert found.complete
        assert cluster.handed == [8, 9, at]
    finally:
        await finder.close()


async def test_stops_reading_at_the_complete_answer(cluster: RetainedKafka) -> None:
    at = put(cluster, protocol.Reply(OURS, 200, b"here"))
    others(cluster, 10)
    finder = ResultLookup(cluster, {}, TOPIC, readers=1, scan_limit=1, timeout=1.0)
    try:
        assert (await finder.find(handle(), 0)).complete
        assert cluster.handed == [at]
    finally:
        await finder.close()


async def test_malformed_replies_are_skipped(cluster: RetainedKafka, lookup: ResultLookup) -> None:
    cluster.append(TOPIC, b"x", headers=[(protocol.CORRELATION_ID, OURS.encode()), (protocol.STATUS, b"abc")])
    cluster.append(TOPIC, b"y", headers=[("unrelated", b"1")])
    reply = protocol.Reply(OURS, 200, b"fine")
    put(cluster, reply)
    found = await lookup.find(handle(), 0)
    assert found.parts == [reply]


async def test_long_poll_finds_a_reply_written_while_it_waits(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 2)
    finding = asyncio.create_task(lookup.find(handle(), 30))
    await cluster.wait_for(lambda: cluster.calls["watermarks"] >= 1)  # the high watermark is taken
    reply = protocol.Reply(OURS, 200, b"later")
    put(cluster, reply)
    found = await asyncio.wait_for(finding, 10)
    assert found.parts == [reply]


async def test_gone_when_retention_passed_the_offset_and_nothing_was_found(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 6)
    cluster.log_start[(TOPIC, 0)] = 4
    found = await lookup.find(handle(offset=2), 0)
    assert found.gone
    assert min(cluster.handed) == 4  # starts at the log start, not at the missing offset
    assert not (await lookup.find(handle(offset=4), 0)).gone


async def test_not_gone_when_the_beginning_is_still_there(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    others(cluster, 3)
    put(cluster, protocol.Reply(OURS, 200, b"kept"))
    cluster.log_start[(TOPIC, 0)] = 2
    found = await lookup.find(handle(offset=1), 0)
    assert found.complete
    assert not found.gone


async def test_watermarks_that_do_not_come_are_unavailable(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    cluster.down = True
    with pytest.raises(KafkaUnavailableError):
        await lookup.find(handle(), 0)
    cluster.down = False
    assert not (await lookup.find(handle(), 0)).complete  # a fresh consumer after the failure


async def test_consumers_are_pooled_bounded_and_closed(cluster: RetainedKafka) -> None:
    finder = ResultLookup(cluster, {}, TOPIC, readers=2, scan_limit=100, timeout=1.0)
    others(cluster, 3)
    for _ in range(3):
        await finder.find(handle(), 0)
    assert len(cluster.consumers) == 1  # reused, not one per lookup
    # Four long-polls, two readers: two wait their turn; the reply ends each as it runs.
    lookups = [asyncio.create_task(finder.find(handle(), 30)) for _ in range(4)]
    await cluster.wait_for(lambda: cluster.calls["watermarks"] >= 5)
    assert len(cluster.consumers) == 2
    put(cluster, protocol.Reply(OURS, 200, b"done"))
    assert all(found.complete for found in await asyncio.wait_for(asyncio.gather(*lookups), 10))
    assert len(cluster.consumers) == 2
    await finder.close()
    assert all(consumer.closed for consumer in cluster.consumers)
    assert not any(consumer.used_after_close for consumer in cluster.consumers)
    assert all(consumer.config["auto.offset.reset"] == "earliest" for consumer in cluster.consumers)
    with pytest.raises(NotAcceptingError):
        await finder.find(handle(), 0)


async def test_a_cancelled_long_poll_ends_its_thread_and_close_still_works(cluster: RetainedKafka) -> None:
    finder = ResultLookup(cluster, {}, TOPIC, readers=1, scan_limit=100, timeout=1.0)
    finding = asyncio.create_task(finder.find(handle(), 300))
    await cluster.wait_for(lambda: cluster.calls["watermarks"] >= 1)
    finding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finding
    found = await asyncio.wait_for(finder.find(handle(), 0), 10)  # the slot came back
    assert not found.complete
    await asyncio.wait_for(finder.close(), 10)
    assert all(consumer.closed for consumer in cluster.consumers)


async def test_a_stream_that_ran_again_is_read_from_its_second_run_only(
    cluster: RetainedKafka, lookup: ResultLookup
) -> None:
    put(cluster, part(0, b"[0a]"))
    put(cluster, part(1, b"[1a]"))  # the first worker died here; the request was redelivered
    restart = put(cluster, part(0, b"[0b]"))
    found = await lookup.find(handle(), 0)
    assert not found.complete
    assert found.next_offset == restart  # a later lookup starts at the run that can complete
    put(cluster, part(1, b"[1b]"))
    put(cluster, part(2, b"", final=True))
    found = await lookup.find(handle(), 0)
    assert found.complete
    assert [p.body for p in found.parts] == [b"[0b]", b"[1b]", b""]
