"""`ResultLookup`: finds one request's reply in the reply topic, from the offset its handle names.

Each lookup borrows a consumer from a small pool (`GatewaySettings.result_readers`, built
lazily), ``assign()``s the handle's partition (no group join, no commits) and reads in a
thread of its own, so the event loop never blocks on librdkafka. It reads from the handle's
offset up to the high watermark, then, if asked to wait, on as records arrive (a long-poll),
and stops at the first complete answer or after `result_scan_limit` records.

A lookup that is cancelled, or a pool that is closing, is noticed between fetches (within
`POLL_SECONDS`); the consumer goes back to the pool only once its thread is done with it, so
no two threads ever call one consumer at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import confluent_kafka
from confluent_kafka import KafkaException

from kafkarpc import protocol
from kafkarpc.errors import ProtocolError
from kafkarpc.fetcher import BATCH_SIZE, POLL_SECONDS, error_event

from .errors import KafkaUnavailableError, NotAcceptingError

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, KafkaClients, Message

    from .locations import ResultHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Found:
    """What one lookup found of a reply."""

    parts: list[protocol.Reply]
    """The whole reply, or the streamed reply's records found, in sequence order (end included)."""
    complete: bool
    """A whole reply, or every part of a stream and its end record, was found."""
    next_offset: int
    """Where a later lookup resumes: past what was read, but never past a part found."""
    gone: bool
    """The log start is past the handle's offset and the reply's beginning was not found: retention."""
    caught_up: bool
    """The whole partition up to its high watermark was read (not stopped by the scan limit)."""

    @property
    def ended(self) -> bool:
        """Whether a stream's end record was found (complete or not: parts may be missing)."""
        return bool(self.parts) and self.parts[-1].sequence is not None and self.parts[-1].final


class ResultLookup:
    """Reads the reply topic for results; construct it on the event loop.

    Args:
        clients: Builds the consumers.
        config: The gateway's consumer config (`GatewaySettings.consumer_config`).
        topic: The reply topic.
        readers: Lookups at once, one consumer and one thread each; more wait their turn.
        scan_limit: Most reply records one lookup reads.
        timeout: Seconds the watermark request may take, and the longest a lookup waits for
            records it knows are there.
    """

    def __init__(
        self,
        clients: KafkaClients,
        config: dict[str, Any],
        topic: str,
        *,
        readers: int,
        scan_limit: int,
        timeout: float,
    ) -> None:
        self._clients = clients
        self._config = {
            **config,
            # A handle's offset retention removed meanwhile must start at the log start, not the end.
            "auto.offset.reset": "earliest",
            "statistics.interval.ms": 0,  # nobody reads these consumers' statistics
        }
        self._topic = topic
        self._scan_limit = scan_limit
        self._timeout = timeout
        self._slots = asyncio.Semaphore(readers)
        self._threads = ThreadPoolExecutor(readers, thread_name_prefix="rpcgw-results")
        self._idle: list[ConsumerClient] = []
        self._idle_lock = threading.Lock()
        self._closing = threading.Event()

    async def find(self, handle: ResultHandle, wait: float) -> Found:
        """Look for ``handle``'s reply, waiting up to ``wait`` seconds for it once caught up.

        Raises:
            KafkaUnavailableError: the partition's watermarks could not be read.
            NotAcceptingError: the lookup is closing.
        """
        await self._slots.acquire()
        if self._closing.is_set():
            self._slots.release()
            raise NotAcceptingError("the gateway is shutting down")
        abandoned = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, self._find, handle, wait, abandoned
        )
        # The slot is freed when the thread is done, not when a cancelled caller leaves.
        future.add_done_callback(self._finished)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            abandoned.set()  # the thread stops at its next fetch
            raise

    async def close(self) -> None:
        """Stop lookups (running ones end within `POLL_SECONDS`) and close every consumer."""
        self._closing.set()
        await asyncio.to_thread(self._shut_down)

    def _finished(self, future: asyncio.Future[Found]) -> None:
        self._slots.release()
        if not future.cancelled():
            future.exception()  # a caller that left cannot retrieve it: not worth a loop warning

    def _shut_down(self) -> None:
        self._threads.shutdown(wait=True)
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for consumer in idle:
            _close(consumer)

    def _find(self, handle: ResultHandle, wait: float, abandoned: threading.Event) -> Found:
        with self._idle_lock:
            consumer = self._idle.pop() if self._idle else None
        if consumer is None:
            consumer = self._clients.consumer(self._config)
        try:
            found = self._scan(consumer, handle, wait, abandoned)
            consumer.assign([])  # an idle consumer must not keep fetching in the background
        except BaseException:
            _close(consumer)  # in an unknown state: the next lookup builds a fresh one
            raise
        with self._idle_lock:
            self._idle.append(consumer)
        return found

    def _scan(
        self, consumer: ConsumerClient, handle: ResultHandle, wait: float, abandoned: threading.Event
    ) -> Found:
        low, high = self._watermarks(consumer, handle.partition)
        collected = _Collected(handle.correlation_id)
        position = max(handle.offset, low)
        read = 0
        waiting_until = time.monotonic() + wait
        starved_since: float | None = None
        if position < high or wait > 0:
            consumer.assign([confluent_kafka.TopicPartition(self._topic, handle.partition, position)])
        while not collected.complete and read < self._scan_limit:
            if self._closing.is_set() or abandoned.is_set():
                break
            now = time.monotonic()
            if position >= high:
                slice_ = min(waiting_until - now, POLL_SECONDS)
                if slice_ <= 0:
                    break
            else:
                # Records are known to be there: a broker that does not hand them over ends the
                # lookup (not caught up) rather than holding the thread.
                if starved_since is None:
                    starved_since = now
                if now - starved_since > self._timeout:
                    break
                slice_ = POLL_SECONDS
            for message in _fetch(consumer, slice_, self._scan_limit - read):
                starved_since = None
                read += 1  # counted even if skipped below, so the limit bounds every record handed over
                offset = message.offset()
                if offset is None or offset < position:
                    continue  # only after an offset reset (the partition recreated): already passed
                position = offset + 1
                if collected.add(message):
                    break
        parts = collected.parts()
        beginning = bool(parts) and parts[0].sequence in (None, 0)
        return Found(
            parts=parts,
            complete=collected.complete,
            next_offset=position if collected.first_offset is None else min(position, collected.first_offset),
            gone=low > handle.offset and not beginning,
            caught_up=position >= high,
        )

    def _watermarks(self, consumer: ConsumerClient, partition: int) -> tuple[int, int]:
        tp = confluent_kafka.TopicPartition(self._topic, partition)
        try:
            watermarks = consumer.get_watermark_offsets(tp, timeout=self._timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"the reply partition cannot be read: {exc}", retry_after=1) from None
        if watermarks is None:
            raise KafkaUnavailableError("the reply partition's offsets did not arrive in time", retry_after=1)
        return watermarks


class _Collected:
    """The records of one correlation id found so far."""

    def __init__(self, correlation_id: str) -> None:
        self._correlation_id = correlation_id
        self._whole: protocol.Reply | None = None
        self._parts: dict[int, protocol.Reply] = {}
        self._end: protocol.Reply | None = None
        self.complete = False
        self.first_offset: int | None = None
        """Offset of the first record found: a later lookup must start at or before it."""

    def add(self, message: Message) -> bool:
        """Take ``message`` if it is one of ours; whether the reply is complete now."""
        headers = message.headers()
        if protocol.correlation_id_of(headers) != self._correlation_id:
            return self.complete  # decoding only our own records keeps a long scan cheap
        try:
            reply = protocol.Reply.from_record(message.value(), headers)
        except ProtocolError as exc:
            log.warning(
                "malformed reply skipped",
                extra={"reason": str(exc), "reply_for": self._correlation_id, "offset": message.offset()},
            )
            return self.complete
        if reply.sequence == 0 and (self._parts or self._end is not None):
            # Part 0 again: the request ran again (its worker died mid-stream and the record was
            # redelivered). Only the run starting here can be whole; never stitch two runs.
            self._parts, self._end, self.first_offset = {}, None, None
        if self.first_offset is None:
            self.first_offset = message.offset()
        if reply.sequence is None:
            self._whole = self._whole or reply
        else:
            # Any other number twice (not expected from an idempotent producer): the first counts.
            self._parts.setdefault(reply.sequence, reply)
            if reply.final and self._end is None:
                self._end = reply
        self.complete = self._whole is not None or (
            self._end is not None and all(n in self._parts for n in range(self._end.sequence or 0))
        )
        return self.complete

    def parts(self) -> list[protocol.Reply]:
        if self._whole is not None:
            return [self._whole]
        if self._end is not None and self.complete:
            last = self._end.sequence or 0
            return [self._parts[n] for n in range(last)] + [self._end]
        return [self._parts[n] for n in sorted(self._parts)]


def _fetch(consumer: ConsumerClient, timeout: float, most: int) -> list[Message]:
    """Up to ``most`` records: the first within ``timeout``, then only those already fetched."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    batch = [first]
    if most > 1:
        batch += consumer.consume(min(most, BATCH_SIZE) - 1, 0)
    return [message for message in batch if not error_event(message)]


def _close(consumer: ConsumerClient) -> None:
    try:
        consumer.close()
    except Exception as exc:
        log.warning("result consumer close failed", extra={"error": str(exc)})
