"""`AsyncProducer`: ``produce()`` on the event loop, delivery reports back to it in batches.

Latency and batching (docs/PERFORMANCE.md, "Sending at once while records are sparse"):
while records are sparse (fewer than `EAGER_LOAD` in the last `LOAD_WINDOW_LINGERS` x
``linger.ms``), each leaves at once, because no other record would share its batch; when
they crowd, they wait ``linger.ms`` and share batches, which is what keeps CPU per record low
under load. The decision follows the arrival rate, not the gap to the previous record: under
load records come in bursts (each hop's batches make the next hop's), and a gap rule would
send every burst's first record alone. librdkafka cannot change ``linger.ms`` at run time, so
there are two producers, two *lanes*: an eager one with ``linger.ms`` 0 and the configured
one. Kafka keeps order per producer, so a record whose key has unacknowledged records on one
lane takes that lane: records with the same key (a request and its cancel record, a stream's
parts) never overtake each other. Records without a key get no order across lanes (none of the
project's need one), and neither does a record sent after an earlier one of its key failed (a
timed-out record may still be written after it).

Threading contract:

* `produce` and `send` are called on the loop thread. ``produce()`` only enqueues into
  librdkafka (microseconds), so it never blocks the loop.
* Each lane has one poll thread serving its delivery callbacks. Whatever one ``poll()``
  reported reaches the loop with ONE ``call_soon_threadsafe``, where futures are settled
  and failures handed to ``on_failed``. With a ``report_interval`` the thread polls on that
  beat while records are in flight, so under load a hand-over carries several reports; and
  where nobody waits for a `send` in real time, a beat's reports wait for the loop's next
  wake-up (`AsyncProducer.collect`), and wake it themselves only if it has not come by at the
  next beat or the thread is about to wait.
* `stop` first ends the poll threads, then flushes on a worker thread and hands over what
  the flush reported: at no moment do two threads serve one lane's callbacks.

Two ways to produce: `send` returns a future settled by the record's acknowledgement (the
worker's replies, the gateway's publishes); `produce` costs nothing per record on success
and reports only a failure (the gateway's requests, whose success is the reply itself).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from .errors import DeliveryError
from .topics import ACL_REFUSALS

if TYPE_CHECKING:
    from .clients import KafkaClients, Message, ProducerClient

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""Longest one ``poll()`` waits when idle (how soon `stop` is noticed); a report ends it at once."""
ANY_PARTITION = -1
"""librdkafka's "let the partitioner choose"."""
LINGER_DEFAULT_MS = 5.0
"""librdkafka's default ``linger.ms``, for a config that does not set it."""
LOAD_WINDOW_LINGERS = 10
"""The arrival rate is averaged over this many ``linger.ms`` (exponential decay) ..."""
EAGER_LOAD = 3.0
"""... and records go to the eager lane while fewer than this arrived in that window: below
0.3 records per ``linger.ms``, a batch would rarely get a second record."""

FailureHandler = Callable[["Message", KafkaError], object]
"""``(message, error)`` for a failed `AsyncProducer.produce`; called on the event loop."""
# (future or None for a produce() record, error or None, message)
Report = tuple["asyncio.Future[Delivery] | None", "KafkaError | None", "Message"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an acknowledged record landed."""

    topic: str
    partition: int
    offset: int


def _refusal(topic: str, error: BufferError | KafkaException) -> DeliveryError:
    """The `DeliveryError` for a record librdkafka refused at once (a full queue is ``_QUEUE_FULL``)."""
    if isinstance(error, BufferError):
        return DeliveryError(topic, KafkaError(KafkaError._QUEUE_FULL))
    return DeliveryError(topic, error.args[0])


def refused_by_acl(error: BaseException) -> bool:
    """Whether ``error`` is a `DeliveryError` for a write this principal's ACLs do not allow."""
    return isinstance(error, DeliveryError) and error.error.code() in ACL_REFUSALS


class AsyncProducer:
    """Sends each record on the lane that is fast for it and keeps its key's order.

    Args:
        clients: Builds the producers.
        config: The librdkafka configuration; its ``linger.ms`` batches crowded records.
        eager: Send records at once while they are sparse (a second producer, ``linger.ms``
            0). Off, with ``linger.ms`` 0 or with ``delivery.report.only.error``, there is
            one producer. Each producer has its own ``queue.buffering.max.*`` bounds.
        clock: Seconds, monotonic: when records arrive.
        report_interval: While records are in flight or their reports keep coming, serve
            the reports every this many seconds, all that came in one hand-over, rather than
            waking the poll thread and the loop for each; 0 serves each as it comes. A report
            after a quiet spell (a beat that found none) is served at once. For records whose
            acknowledgement nobody waits for in real time: `produce` records (their success
            is silent), and `send` records unless ``waited_sends``.
        waited_sends: A `send` caller waits for its acknowledgement in real time (the gateway's
            `POST /publish`): while one is unacknowledged its lane serves each report at once.
            False for the worker, whose replies' acknowledgements only finish offsets: with a
            ``report_interval`` its reports are then settled when the loop next wakes for
            something else and calls `collect`, or at the next beat.
    """

    def __init__(
        self,
        clients: KafkaClients,
        config: dict[str, Any],
        *,
        eager: bool = True,
        clock: Callable[[], float] = time.monotonic,
        report_interval: float = 0.0,
        waited_sends: bool = True,
    ) -> None:
        linger_ms = config.get("linger.ms", config.get("queue.buffering.max.ms", LINGER_DEFAULT_MS))
        self._linger = float(linger_ms) / 1000
        # Without a report for every record the key map could not be settled.
        reports = str(config.get("delivery.report.only.error", False)).lower() not in ("true", "1")
        two = eager and self._linger > 0 and reports
        self._keys = _KeyedLanes() if two else None
        lane = partial(
            _Lane, clients, keys=self._keys, report_interval=report_interval, waited_sends=waited_sends
        )
        self._batching = lane(config, "kafka-producer")
        self._eager = self._batching
        if two:
            # linger.ms's alias must not contradict it.
            eager_config = {k: v for k, v in config.items() if k != "queue.buffering.max.ms"}
            self._eager = lane({**eager_config, "linger.ms": 0}, "kafka-producer-eager")
        self._lanes = (self._eager, self._batching) if two else (self._batching,)
        self._clock = clock
        self._window = LOAD_WINDOW_LINGERS * self._linger
        self._load = 0.0  # records arrived in the last window, decayed, as of _last_arrival
        self._last_arrival = 0.0
        self.eager_records = 0
        """Records sent at once on the eager lane (the others joined batches)."""

    @property
    def client(self) -> ProducerClient:
        """A producer, for metadata calls (thread-safe in librdkafka)."""
        return self._batching.client

    @property
    def acknowledged_at(self) -> float:
        """`time.monotonic` when a poll thread last served an acknowledgement (0 before any)."""
        return max(lane.acknowledged_at for lane in self._lanes)

    def purge_queued(self) -> None:
        """Drop the records still queued in librdkafka (never sent), each reported as failed
        with ``_PURGE_QUEUE``; records already on the wire stay. For brokers that stopped
        answering: a queued record would otherwise leave when they come back, after its deadline.
        """
        for lane in self._lanes:
            lane.client.purge(in_queue=True, in_flight=False, blocking=False)

    @property
    def keys_in_flight(self) -> int:
        """Keys with records not yet acknowledged (tracked only with two lanes)."""
        return 0 if self._keys is None else len(self._keys)

    def start(self, on_failed: FailureHandler | None = None) -> None:
        """Start the poll threads; call on the event loop.

        ``on_failed`` is called on the loop for each record given to `produce` that Kafka
        refused in its delivery report.
        """
        for lane in self._lanes:
            lane.start(on_failed)

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Enqueue a record; only a failure is reported, to ``on_failed``.

        Raises:
            DeliveryError: librdkafka refused the record at once (a full queue is ``_QUEUE_FULL``).
        """
        lane = self._lane(key)
        try:
            lane.client.produce(topic, value, key, headers=headers)
        except BaseException as exc:  # a refusal, or a bad argument (TypeError)
            self._refused(key)
            if isinstance(exc, BufferError | KafkaException):
                raise _refusal(topic, exc) from None
            raise

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        partition: int | None = None,
    ) -> asyncio.Future[Delivery]:
        """Enqueue a record; the future resolves once Kafka acknowledged it.

        Call on the loop thread. The future fails with `DeliveryError` when the record was
        refused, including at once (a full local queue counts as refused).
        """
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        lane = self._lane(key)
        try:
            lane.client.produce(
                topic,
                value,
                key,
                ANY_PARTITION if partition is None else partition,
                on_delivery=partial(lane.acknowledged, future),
                headers=list(headers),
            )
        except BaseException as exc:  # a refusal, or a bad argument (TypeError)
            self._refused(key)
            if not isinstance(exc, BufferError | KafkaException):
                raise
            future.set_exception(_refusal(topic, exc))
            return future
        lane.sent()
        return future

    def collect(self) -> None:
        """Settle the reports handed over since the loop last woke (loop thread).

        For a caller whose loop wakes often for its own reasons (the worker, for each fetched
        batch): reports taken here need no wake-up of their own.
        """
        for lane in self._lanes:
            lane.collect()

    async def stop(self, flush_timeout: float) -> int:
        """Stop the poll threads, flush what is queued (bounded); returns the records left unsent."""
        # Both lanes at once: the bound is flush_timeout, not twice that.
        left = sum(await asyncio.gather(*(lane.stop(flush_timeout) for lane in self._lanes)))
        if left:
            log.error("records not delivered at shutdown", extra={"records": left})
        return left

    def _refused(self, key: bytes | None) -> None:
        """A record was not produced: no delivery report will settle its key."""
        if self._keys is not None:
            self._keys.settled(key)

    def _lane(self, key: bytes | None) -> _Lane:
        """The lane for a record arriving now: its key's, else eager while records are sparse."""
        eager, batching, keys = self._eager, self._batching, self._keys
        if keys is None:
            return batching
        now = self._clock()
        load = self._load * math.exp((self._last_arrival - now) / self._window)
        lane = eager if load < EAGER_LOAD else batching
        self._load, self._last_arrival = load + 1.0, now
        if key is not None:
            lane = keys.take(key, lane)
        if lane is eager:
            self.eager_records += 1
        return lane


class _KeyedLanes:
    """Which lane each key's unacknowledged records are on (two lanes only).

    Taken on the loop thread before a record is produced, settled by the poll thread that
    serves its delivery report (or by the loop when it was refused at once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[bytes, tuple[_Lane, int]] = {}

    def __len__(self) -> int:
        """Keys with unacknowledged records."""
        return len(self._lanes)

    def take(self, key: bytes, lane: _Lane) -> _Lane:
        """The lane for one more record with ``key``: the one its earlier records are on, if any."""
        with self._lock:
            held = self._lanes.get(key)
            if held is not None:
                lane, count = held
                self._lanes[key] = (lane, count + 1)
            else:
                self._lanes[key] = (lane, 1)
        return lane

    def settled(self, key: bytes | None) -> None:
        """A record with ``key`` was acknowledged or refused."""
        if key is None:
            return
        with self._lock:
            held = self._lanes.get(key)
            if held is None:  # a bug, but raising here would end the poll thread
                return
            lane, count = held
            if count == 1:
                del self._lanes[key]
            else:
                self._lanes[key] = (lane, count - 1)


class _Lane:
    """One confluent producer and the thread serving its delivery reports."""

    def __init__(
        self,
        clients: KafkaClients,
        config: dict[str, Any],
        name: str,
        keys: _KeyedLanes | None,
        *,
        report_interval: float,
        waited_sends: bool,
    ) -> None:
        self._name = name
        self._interval = report_interval  # `AsyncProducer`'s arguments of the same names
        self._waited = waited_sends
        self._sends = 0  # waited-for send() records produced (loop thread only)
        self._sends_served = 0  # of them, reported (the thread serving callbacks only)
        self._wake = threading.Event()  # ends a beat early: stop, or a send someone waits for
        self._keys = keys
        self._on_failed: FailureHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._reports: list[Report] = []  # only the thread serving callbacks touches it
        # Reports wait for the loop to come by only where nobody waits for them in real time.
        self._lazy = report_interval > 0 and not waited_sends
        self._handed_lock = threading.Lock()
        self._handed: list[Report] = []  # handed over, not yet collected (under the lock)
        self._collecting = False  # a collect() is scheduled on the loop (under the lock)
        self._acked = False  # an acknowledgement served since the last stamp (same thread)
        self.acknowledged_at = 0.0
        """`time.monotonic` of the poll that last served an acknowledgement."""
        # The config-level callback serves produce(): no per-record closure on that path.
        self.client = clients.producer({**config, "on_delivery": self._reported})

    def start(self, on_failed: FailureHandler | None) -> None:
        self._on_failed = on_failed
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._poll_until_stopped, name=self._name, daemon=True)
        self._thread.start()

    async def stop(self, flush_timeout: float) -> int:
        """End the poll thread, then flush (bounded) and hand over; returns the records left."""
        self._loop = self._loop or asyncio.get_running_loop()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        left = await asyncio.to_thread(self.client.flush, flush_timeout)
        self._hand_over(quiet_next=True)
        return int(left)

    def _reported(self, error: KafkaError | None, message: Message) -> None:
        if self._keys is not None:
            self._keys.settled(message.key())
        if error is None:
            self._acked = True
        elif self._on_failed is not None:
            self._reports.append((None, error, message))

    def acknowledged(
        self, future: asyncio.Future[Delivery], error: KafkaError | None, message: Message
    ) -> None:
        """`AsyncProducer.send`'s delivery callback (on this lane's poll thread)."""
        if self._keys is not None:
            self._keys.settled(message.key())
        if self._waited:
            self._sends_served += 1
        self._acked = self._acked or error is None
        self._reports.append((future, error, message))

    def sent(self) -> None:
        """An `AsyncProducer.send` record was produced on this lane (loop thread)."""
        if self._waited:
            self._sends += 1
            self._wake.set()  # its caller waits: no beat until it is served

    def _poll_until_stopped(self) -> None:
        served = 0  # reports the last beat served; none after a poll that waited
        while not self._stopping.is_set():
            # Served before counted is possible (the report can beat `sent`): <= 0 is "none".
            waited_for = self._sends - self._sends_served > 0
            if self._interval and (len(self.client) or served) and not waited_for:
                # Records in flight, or reports still coming: serve them on a beat, not with a
                # wake-up each. Only a beat that finds nothing, with nothing in flight, ends it:
                # at a few hundred records a second each is often acknowledged before the next
                # is produced, and a poll() that waits whenever none is in flight wakes for each.
                self._wake.wait(self._interval)
                self._wake.clear()
                served = self.client.poll(0)
            else:
                self.client.poll(POLL_SECONDS)
                served = 0
            if self._acked:  # one clock read per poll, not per record
                self._acked = False
                self.acknowledged_at = time.monotonic()
            self._hand_over(quiet_next=not (len(self.client) or served))

    def _hand_over(self, *, quiet_next: bool) -> None:
        """Give the loop the reports served; ``quiet_next``: the next poll waits, not a beat."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        reports, self._reports = self._reports, []
        if not self._lazy:
            if reports:
                loop.call_soon_threadsafe(self._settle, reports)
            return
        with self._handed_lock:
            uncollected = bool(self._handed)  # the loop has not come by since the last beat
            self._handed += reports
            wake = bool(self._handed) and not self._collecting and (uncollected or quiet_next)
            if wake:
                self._collecting = True
        if wake:
            loop.call_soon_threadsafe(self.collect)

    def collect(self) -> None:
        """Settle the reports handed over lazily (loop thread)."""
        if not self._handed:  # the common case, without the lock; a scheduled collect() finds it so too
            return
        with self._handed_lock:
            reports, self._handed = self._handed, []
            self._collecting = False
        self._settle(reports)

    def _settle(self, reports: list[Report]) -> None:
        for future, error, message in reports:
            if future is None:
                assert error is not None
                assert self._on_failed is not None
                try:
                    self._on_failed(message, error)
                except Exception:  # a bug there must not lose the rest of the batch
                    log.exception("delivery failure handler failed")
            elif future.done():
                continue
            elif error is None:
                future.set_result(
                    Delivery(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
                )
            else:
                future.set_exception(DeliveryError(str(message.topic()), error))
