"""``python -m bench.dispatch``: the worker's Python per record, in one process, without Kafka.

What the worker's event loop does for each request record besides the hand-offs: the cancel
check of ``Worker.on_batch``, then ``Dispatcher.dispatch`` (decode, validate, the deadline
scope, the ``echo`` handler, the reply), ``OutcomePublisher.publish`` into a producer that
settles each send at once, and a loop turn, which each record's task step takes in the worker.
One thread, no broker and no other process, so a change to that path shows as a difference of
a few percent, where the whole stack's CPU per request moves by tens of percent with the host
(docs/PERFORMANCE.md, "Fewer Python steps per record"). Run two checkouts alternately and
compare the minima: the least disturbed repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

import confluent_kafka
import uvloop

from kafkarpc.protocol import Cancel, Request, correlation_id_of
from workers.call import Call
from workers.dispatcher import Dispatcher
from workers.examples import registry
from workers.metrics import WorkerMetrics
from workers.publisher import OutcomePublisher
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from kafkarpc.clients import Message
    from kafkarpc.producer import AsyncProducer

BODY = b'{"nonce": "' + b"x" * 240 + b'"}'


class _SettlingProducer:
    """Stands in for `AsyncProducer`: every send is acknowledged at once; keeps the keys."""

    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None, *rest: object) -> asyncio.Future[None]:
        """Settled at once; ``rest`` (headers, partition) is ignored."""
        self.keys.append(key)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def requests(count: int, settings: WorkerSettings) -> list[Message]:
    """``count`` echo request records, as the gateway writes them, due in ten minutes."""
    deadline = int((time.time() + 600) * 1000)
    reply_to = min(settings.reply_topics)
    records = []
    for offset in range(count):
        request = Request(uuid.uuid4().hex, reply_to, 0, "echo", deadline, BODY)
        headers: list[tuple[str, str | bytes | None]] = list(request.headers())
        record = confluent_kafka.Message(
            topic=settings.request_topic, partition=0, offset=offset, value=BODY, headers=headers
        )
        records.append(cast("Message", record))
    return records


async def measure(count: int, repeats: int) -> tuple[list[float], _SettlingProducer]:
    """CPU-µs per record of each repetition over ``count`` records, and the producer they went to."""
    settings = WorkerSettings()
    metrics = WorkerMetrics()
    producer = _SettlingProducer()
    with ThreadPoolExecutor(1) as pool:
        dispatcher = Dispatcher(registry, settings, metrics, pool)
        publisher = OutcomePublisher(cast("AsyncProducer", producer), settings.dead_letter_topic, metrics)
        records = requests(count, settings)
        per_record = []
        for _ in range(repeats):
            started = time.process_time()
            for record in records:
                headers = record.headers()
                if Cancel.from_record(headers) is None:  # as Worker.on_batch asks of each record
                    call = Call(correlation_id_of(headers))
                    await publisher.publish(record, await dispatcher.dispatch(record, call))
                await asyncio.sleep(0)  # a loop turn per record, as each record's task step has
            per_record.append((time.process_time() - started) / count * 1e6)
    return per_record, producer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=2000, help="records per repetition")
    parser.add_argument("--repeats", type=int, default=25, help="repetitions")
    arguments = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        per_record, _ = runner.run(measure(arguments.records, arguments.repeats))
    per_record.sort()
    print(
        f"CPU-µs per record: min {per_record[0]:.1f}, p25 {per_record[len(per_record) // 4]:.1f}, "
        f"median {statistics.median(per_record):.1f} ({arguments.repeats} x {arguments.records} records)"
    )


if __name__ == "__main__":
    main()
