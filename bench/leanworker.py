"""An experiment, kept in history: the leanest worker the shared core allows, for a bound.

`Fetcher` hands each batch to the loop; each request record is decoded and answered with an
echo reply, produced by `AsyncProducer` (both lanes). ``mode``: ``produce`` (no delivery
future: the reply is only enqueued), ``send`` (a delivery future per reply, settled by the
poll thread as the worker's are), ``task`` (a task per record awaiting that future inside a
deadline scope: a task and a timer per record, as the worker's dispatch has). No dispatch
layers, validation past decoding, retries, metrics, cancels or offsets after acknowledgement:
what the worker adds to this is its per-record machinery, which is the measurement.

    python -m bench.leanworker TOPIC READY_FILE MODE    # started by bench.leanbound
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import uvloop

from kafkarpc import protocol
from kafkarpc.clients import ConfluentClients, Message
from kafkarpc.connection import PRODUCER_DEFAULTS, KafkaSettings
from kafkarpc.fetcher import Fetcher
from kafkarpc.producer import AsyncProducer

DEADLINE_SECONDS = 10.0


async def serve(topic: str, ready: Path, mode: str) -> None:
    """Answer every request on ``topic`` until killed; ``ready`` is created once assigned."""
    kafka = KafkaSettings()
    clients = ConfluentClients()
    producer = AsyncProducer(clients, kafka.client_config(dict(PRODUCER_DEFAULTS)))
    producer.start()
    consumer_config = {
        "group.id": f"bench-lean-{topic}",
        "fetch.wait.max.ms": 100,
        "socket.nagle.disable": True,
        "auto.offset.reset": "latest",
    }
    consumer = clients.consumer(kafka.client_config(consumer_config))

    def answer(message: Message) -> tuple[protocol.Request, protocol.Reply]:
        request = protocol.Request.from_record(message.value(), message.headers())
        reply = protocol.Reply(request.correlation_id, 200, request.body, request.content_type)
        return request, reply

    def done(_: Any) -> None:
        pass

    async def process(message: Message) -> None:
        request, reply = answer(message)
        key, headers = request.correlation_id.encode(), reply.headers()
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + DEADLINE_SECONDS):
            await producer.send(request.reply_to, reply.body, key, headers)

    def on_batch(messages: list[Message], _fetched_at: float) -> None:
        for message in messages:
            if mode == "task":
                asyncio.create_task(process(message)).add_done_callback(done)
                continue
            request, reply = answer(message)
            key, headers = request.correlation_id.encode(), reply.headers()
            if mode == "send":
                producer.send(request.reply_to, reply.body, key, headers).add_done_callback(done)
            else:
                producer.produce(request.reply_to, reply.body, key, headers)

    fetcher = Fetcher(consumer, name="lean-consumer", on_batch=on_batch)
    fetcher.start(lambda client: client.subscribe([topic], on_assign=lambda *_: ready.touch()))
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
