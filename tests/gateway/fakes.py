"""A worker for the gateway's unit tests: a thread on `FakeKafka` that answers with `kafkarpc.protocol`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from kafkarpc import protocol
from kafkarpc.clients import Message
from tests.fakekafka import FakeKafka

Handler = Callable[[protocol.Request], protocol.Reply | None]
"""Returns the reply to send, or None to send nothing."""


class FakeWorker:
    """Serves the requests topic on a thread: decodes, calls a handler, produces the reply."""

    def __init__(self, cluster: FakeKafka, handlers: dict[str, Handler], topic: str = "requests") -> None:
        self.cluster = cluster
        self.handlers = handlers
        self.requests: list[protocol.Request] = []
        self.records: list[Message] = []
        self._consumer = cluster.consumer({})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(cluster.counts[topic])])
        self._stop = threading.Event()
        self._received = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self.cluster.changed:
            self.cluster.changed.notify_all()
        self._thread.join()

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests arrived (run it through ``asyncio.to_thread``)."""
        with self._received:
            return self._received.wait_for(lambda: len(self.requests) >= count, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, timeout=0.05):
                self.records.append(message)
                if protocol.Cancel.from_record(message.headers()) is not None:
                    continue  # the gateway's cancel records: tests read them from the cluster
                request = protocol.Request.from_record(message.value(), message.headers())
                with self._received:
                    self.requests.append(request)
                    self._received.notify_all()
                handler = self.handlers[request.method]
                threading.Thread(target=self._serve, args=(handler, request), daemon=True).start()

    def _serve(self, handler: Handler, request: protocol.Request) -> None:
        reply = handler(request)
        if reply is not None:
            self.reply(request, reply)

    def send(self, topic: str, partition: int, headers: Any, value: bytes | None) -> None:
        """Produce a raw reply record (tests use it for malformed and late replies too)."""
        self.cluster.append(topic, value, headers=headers, partition=partition)

    def reply(self, request: protocol.Request, reply: protocol.Reply) -> None:
        """Produce ``reply`` where ``request`` asked for it."""
        self.send(request.reply_to, request.reply_partition or 0, reply.headers(), reply.body)


def echo(request: protocol.Request) -> protocol.Reply:
    """Replies with the request body and content type."""
    return protocol.Reply(request.correlation_id, 200, request.body, request.content_type, request.trace)
