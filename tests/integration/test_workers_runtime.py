"""Worker processes against the real broker: scale-out, crash, poison, deadlines, graceful stop."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from functools import partial

import orjson
import pytest

from devstack import ExistingKafka, KafkaCluster
from kafkarpc.protocol import DEAD_LETTER_REASON
from tests.workers.realkafka import (
    RecordReader,
    Requester,
    WorkerProcess,
    committed,
    eventually,
    make_request,
    never,
)

Kafka = KafkaCluster | ExistingKafka


@pytest.fixture
def names(kafka: Kafka, unique: str) -> dict[str, str]:
    """Fresh topics and group per test."""
    names = {
        "requests": f"requests-{unique}",
        "replies": f"replies-{unique}",
        "dlt": f"requests-{unique}.dlt",
        "group": f"workers-{unique}",
    }
    kafka.create_topics({names["requests"]: 6, names["replies"]: 1, names["dlt"]: 1})
    return names


@pytest.fixture
def start_worker(kafka: Kafka, names: dict[str, str]) -> Iterator[object]:
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(
            kafka.bootstrap_servers,
            {
                "WORKER_REQUEST_TOPIC": names["requests"],
                "WORKER_REPLY_TOPICS": names["replies"],
                "WORKER_DEAD_LETTER_TOPIC": names["dlt"],
                "WORKER_GROUP_ID": names["group"],
                **env,
            },
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _all_ready(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        eventually(worker.ready, 60, f"worker ready\n{worker.output()}")


def _echo_each_once(kafka: Kafka, names: dict[str, str], count: int) -> None:
    """Send ``count`` echo requests and check that each got exactly its own body back, with 200."""
    requests = [make_request("echo", orjson.dumps({"n": i}), names["replies"]) for i in range(count)]
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    try:
        Requester(kafka.bootstrap_servers, names["requests"]).send(requests)
        eventually(lambda: len(reader.replies()) >= count, 90, f"{count} replies", reader.poll)
        replies = reader.replies()
    finally:
        reader.close()
    for request in requests:
        assert {(r.status, r.body) for r in replies[request.correlation_id]} == {(200, request.body)}


def test_1000_concurrent_requests_over_3_worker_processes(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    workers = [start_worker() for _ in range(3)]
    _all_ready(workers)
    _echo_each_once(kafka, names, 1000)
    handled = [worker.handled() for worker in workers]
    assert sum(handled) >= 1000
    # All three joined before the load, so every process served part of it.
    assert all(count > 0 for count in handled), handled


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_worker_serves_on_the_loop_worker_loop_names(
    kafka: Kafka, names: dict[str, str], start_worker, loop: str
) -> None:
    worker = start_worker(WORKER_LOOP=loop, WORKER_LOG_FORMAT="json")
    _all_ready([worker])
    _echo_each_once(kafka, names, 100)
    lines = [orjson.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    started = [line for line in lines if line["message"] == "starting worker"]
    assert [line["loop"] for line in started] == [loop], worker.output()


def test_kill_9_under_load_redelivers_to_another_worker(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    env = {"WORKER_CONCURRENCY": "8"}
    victim, survivor = start_worker(**env), start_worker(**env)
    _all_ready([victim, survivor])
    # Distinct sleep lengths make every reply body unique: {"slept": <that request's seconds>}.
    requests = [
        make_request("sleep", orjson.dumps({"seconds": 0.05 + i / 1e6}), names["replies"], deadline_in=120)
        for i in range(600)
    ]
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    try:
        Requester(kafka.bootstrap_servers, names["requests"]).send(requests)
        eventually(lambda: len(reader.replies()) >= 100, 60, "the first replies", reader.poll)
        assert victim.handled() > 0
        victim.process.kill()  # SIGKILL: no drain, no commit
        victim.wait(10)
        eventually(lambda: len(reader.replies()) >= len(requests), 120, "every reply", reader.poll)
        replies = reader.replies()
    finally:
        reader.close()
    for request in requests:
        expected = orjson.loads(request.body)["seconds"]
        # Duplicates are allowed (at-least-once); somebody else's reply never.
        assert {orjson.loads(r.body)["slept"] for r in replies[request.correlation_id]} == {expected}
    assert set(replies) == {r.correlation_id for r in requests}
    # The survivor took over the victim's unfinished records.
    assert survivor.handled() > len(requests) / 2


def test_poison_records_go_to_the_dead_letter_topic_while_the_partition_flows(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    worker = start_worker()
    _all_ready([worker])
    replies_to = names["replies"]
    good_before, good_after = (make_request("echo", b"%d" % i, replies_to) for i in range(2))
    unknown = make_request("no.such.method", b"", replies_to)
    duplicated = make_request("echo", b"dup", replies_to)
    requester = Requester(kafka.bootstrap_servers, names["requests"])
    requester.send([good_before], partition=0)
    requester.raw(b"\xff garbage", [], None, 0)
    requester.send([unknown], partition=0)
    requester.raw(b"dup", [*duplicated.headers(), ("rpc-correlation-id", b"0" * 32)], None, 0)
    requester.send([good_after], partition=0)
    reader = RecordReader(kafka.bootstrap_servers, replies_to)
    dlt = RecordReader(kafka.bootstrap_servers, names["dlt"])
    try:
        eventually(lambda: len(reader.replies()) >= 3, 60, "replies", reader.poll)
        eventually(lambda: len(dlt.records) >= 3, 60, "dead letters", dlt.poll)
        replies = reader.replies()
    finally:
        reader.close()
        dlt.close()
    assert replies[good_before.correlation_id][0].body == b"0"
    assert replies[good_after.correlation_id][0].body == b"1"
    assert replies[unknown.correlation_id][0].status == 404
    assert duplicated.correlation_id not in replies
    reasons = [dict(record.headers())[DEAD_LETTER_REASON] for record in dlt.records]
    assert reasons == [b"invalid-request", b"unknown-method", b"duplicate-header"]
    assert dlt.records[0].value() == b"\xff garbage"
    eventually(
        lambda: committed(kafka.bootstrap_servers, names["group"], names["requests"], 1)[0] == 5,
        30,
        "offset 5 committed",
    )


def test_expired_requests_are_skipped(kafka: Kafka, names: dict[str, str], start_worker) -> None:
    worker = start_worker()
    _all_ready([worker])
    expired = make_request("echo", b"late", names["replies"], deadline_in=-5)
    fresh = make_request("echo", b"fresh", names["replies"])
    Requester(kafka.bootstrap_servers, names["requests"]).send([expired, fresh], partition=0)
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    try:
        eventually(lambda: fresh.correlation_id in reader.replies(), 60, "the fresh reply", reader.poll)
        eventually(lambda: worker.metric("rpcworker_expired_total") == 1, 10, "expired counted")
        reader.poll()
        assert expired.correlation_id not in reader.replies()
    finally:
        reader.close()
    eventually(
        lambda: committed(kafka.bootstrap_servers, names["group"], names["requests"], 1)[0] == 2,
        30,
        "both offsets committed",
    )


def test_sigterm_drains_in_flight_work_and_commits_it(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    worker = start_worker(WORKER_DRAIN_TIMEOUT="30")
    _all_ready([worker])
    requests = [make_request("sleep", orjson.dumps({"seconds": 2}), names["replies"]) for _ in range(5)]
    Requester(kafka.bootstrap_servers, names["requests"]).send(requests, partition=0)
    eventually(lambda: worker.metric("rpcworker_in_flight") == 5, 30, "five handlers running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    try:
        eventually(lambda: len(reader.replies()) == 5, 30, "the drained replies", reader.poll)
    finally:
        reader.close()
    assert committed(kafka.bootstrap_servers, names["group"], names["requests"], 1) == [5]


def full(worker: WorkerProcess) -> bool:
    return worker.metric("rpcworker_fetch_paused") == 1


def test_a_paused_worker_fetches_again_as_soon_as_it_resumes(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    """Back-pressure costs no idle time: each resume restarts librdkafka's fetcher at once.

    Each wave of eight 50 ms requests overfills a buffer of four long enough for the fetch
    thread to pause, so the worker pauses and resumes once a wave, and the next wave follows
    the replies. Without the seek on resume, librdkafka's fetcher, idle while paused, noticed
    the resume at its next timed wake-up, up to a second later, so the next wave waited for
    it: about a second a wave, which under sustained overload collapsed a worker to a few
    hundred requests a second.
    """
    worker = start_worker(WORKER_CONCURRENCY="2", WORKER_MAX_BUFFERED="4")
    _all_ready([worker])
    requester = Requester(kafka.bootstrap_servers, names["requests"])
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    waves, size, body = 10, 8, orjson.dumps({"seconds": 0.05})
    started = time.monotonic()
    try:
        for wave in range(1, waves + 1):
            requester.send([make_request("sleep", body, names["replies"]) for _ in range(size)], partition=0)
            answered = partial(lambda count: len(reader.records) >= count, wave * size)
            eventually(answered, 30, f"wave {wave}'s replies", reader.step)
    finally:
        reader.close()
    elapsed = time.monotonic() - started
    assert len(reader.replies()) == waves * size
    # A wave is four rounds of 50 ms and a few round trips; a stall of up to a second per
    # resume would add most of a second to each.
    assert elapsed < waves * 0.65, f"{waves} waves took {elapsed:.1f} s\n{worker.output()}"


def test_a_worker_with_one_slot_does_not_wait_for_each_acknowledgement(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    """A handler's slot is free once it has answered; the acknowledgement only finishes the offset.

    Replies linger half a second before they are sent (and acknowledged). A slot held until
    its reply's acknowledgement spaced a single slot's requests by the linger: twenty took ten
    seconds. Freed when the handler is done, they are all answered within about one linger.
    """
    linger_ms = 500
    properties = orjson.dumps({"linger.ms": linger_ms}).decode()
    worker = start_worker(WORKER_CONCURRENCY="1", KAFKA_EAGER_SEND="false", KAFKA_PROPERTIES=properties)
    _all_ready([worker])
    requester = Requester(kafka.bootstrap_servers, names["requests"])
    reader = RecordReader(kafka.bootstrap_servers, names["replies"])
    count = 20
    started = time.monotonic()
    try:
        requester.send([make_request("echo", b"{}", names["replies"]) for _ in range(count)], partition=0)
        eventually(lambda: len(reader.records) >= count, 30, "the replies", reader.step)
    finally:
        reader.close()
    elapsed = time.monotonic() - started
    assert len(reader.replies()) == count
    assert elapsed < count * linger_ms / 1000 / 4, f"{count} replies took {elapsed:.1f} s\n{worker.output()}"
    # The acknowledgements still finish the offsets: everything is committed.
    eventually(
        lambda: committed(kafka.bootstrap_servers, names["group"], names["requests"], 1)[0] == count,
        30,
        f"offset {count} committed",
    )


def test_partitions_a_paused_worker_takes_over_stay_paused(
    kafka: Kafka, names: dict[str, str], start_worker
) -> None:
    """Back-pressure holds across a rebalance: a full worker does not fetch the partitions it gains."""
    env = {"WORKER_CONCURRENCY": "1", "WORKER_MAX_BUFFERED": "2", "WORKER_DRAIN_TIMEOUT": "1"}
    keeper, leaver = start_worker(**env), start_worker(**env)
    _all_ready([keeper, leaver])
    requester = Requester(kafka.bootstrap_servers, names["requests"])

    def hold(count: int, partition: int) -> None:
        body = orjson.dumps({"seconds": 60})
        requester.send([make_request("sleep", body, names["replies"], deadline_in=120)] * count, partition)

    for partition in range(6):
        hold(1, partition)
    for worker in (keeper, leaver):  # each took its partitions' first record, and is now full
        eventually(partial(full, worker), 30, "a full worker")
    taken = keeper.metric("rpcworker_records_consumed_total")
    for partition in range(6):
        hold(10, partition)
    leaver.signal(signal.SIGTERM)
    assert leaver.wait(30) == 0, leaver.output()
    # The keeper now owns all six partitions, each with 11 records and nothing committed, but it
    # is still full: an unpaused fetch would return the new partitions' records within ~0.1 s.
    eventually(
        lambda: keeper.metric("rpcworker_assigned_partitions") == 6, 60, "the keeper owns 6 partitions"
    )
    assert keeper.metric("rpcworker_fetch_paused") == 1
    consumed = "rpcworker_records_consumed_total"
    never(lambda: keeper.metric(consumed) > taken, 3, f"the paused keeper fetched records\n{keeper.output()}")
