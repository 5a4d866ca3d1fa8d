"""`RequestReplyClient`: one request out, one reply back, with a deadline.

Per request the hot path is: register a future, one ``produce()``, one future
resolution by the reply listener. The future is registered *before* the produce
(a fast worker cannot beat it) and removed in ``finally`` on every exit: reply,
deadline, produce failure, caller disconnect, task cancellation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from functools import partial
from typing import TYPE_CHECKING

from kafkarpc import protocol, stamps, tracing
from kafkarpc.errors import DeliveryError

from .errors import (
    CallerDeadlineError,
    ClientDisconnectedError,
    GatewayError,
    KafkaUnavailableError,
    NotAcceptingError,
    OverloadedError,
    ReplyTimeout,
    delivery_error,
)
from .pending import PendingFullError, PendingReplies
from .spans import RequestSpans

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

    from kafkarpc.clients import Message
    from kafkarpc.producer import AsyncProducer, Delivery
    from kafkarpc.tracing import Span, Tracer

    from .correlation import CorrelationIds
    from .health import KafkaHealth
    from .metrics import GatewayMetrics
    from .parts import PartStream
    from .replies import ReplyListener, ReplyRouter
    from .settings import GatewaySettings

log = logging.getLogger(__name__)


class State(enum.Enum):
    """Lifecycle of the client."""

    STARTING = "starting"  # Kafka not yet reached or reply consumer not yet positioned
    RUNNING = "running"  # accepting requests
    DRAINING = "draining"  # refusing new requests; pending ones still get replies
    STOPPED = "stopped"  # Kafka clients closed


class RequestReplyClient:
    """Sends requests and waits for their replies; owns the Kafka clients' lifecycle."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        ids: CorrelationIds,
        pending: PendingReplies[protocol.Reply],
        producer: AsyncProducer,
        listener: ReplyListener,
        router: ReplyRouter,
        health: KafkaHealth,
        metrics: GatewayMetrics,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._spans = (
            None if tracer is None else RequestSpans(tracer, settings.request_topic, settings.reply_topic)
        )
        """Traces each request's produce and its reply's arrival; None when tracing is off."""
        self._router = router
        self._ids = ids
        self._pending = pending
        self._producer = producer
        self._listener = listener
        self._health = health
        self._metrics = metrics
        self.state = State.STARTING
        self.started = asyncio.Event()
        """Set once the client accepts requests."""
        metrics.pending.set_function(lambda: len(pending))

    @property
    def ready(self) -> bool:
        """Accepting requests, brokers reachable and the reply consumer positioned."""
        return (
            self.state is State.RUNNING
            and self._health.reachable
            and self._health.fatal is None
            and self._listener.running
        )

    async def start(self) -> None:
        """Reach Kafka (retrying), position the reply consumer, then accept requests."""
        self._producer.start(self.request_failed)
        await self._health.wait_reachable()
        partition = self._settings.reply_partition
        if partition is None:
            partition = random.randrange(self._health.reply_partitions)  # noqa: S311 - spreading, not security
        elif partition >= self._health.reply_partitions:
            raise ValueError(
                f"reply partition {partition} does not exist: {self._settings.reply_topic!r} has "
                f"{self._health.reply_partitions}"
            )
        await self._listener.start(self._settings.reply_topic, partition)
        self._health.watch()
        if self.state is State.STARTING:
            self.state = State.RUNNING
            self.started.set()
        log.info("gateway accepting requests", extra={"reply_partition": partition})

    def drain(self) -> None:
        """Refuse new requests from now on; pending ones continue. Safe from a signal handler."""
        if self.state in (State.STARTING, State.RUNNING):
            self.state = State.DRAINING

    async def stop(self, drain_timeout: float, flush_timeout: float) -> None:
        """Drain pending requests (bounded), flush the producer, close the consumer; idempotent."""
        if self.state is State.STOPPED:
            return
        self.drain()
        try:
            async with asyncio.timeout(drain_timeout):
                await self._pending.emptied()
        except TimeoutError:
            log.warning("shutdown with requests still pending", extra={"pending": len(self._pending)})
        self.state = State.STOPPED
        await self._health.stop()
        await self._producer.stop(flush_timeout)
        await self._listener.stop()

    def ensure_accepting(self) -> None:
        """Raise unless new requests may be produced now.

        Raises:
            NotAcceptingError: starting or draining.
            KafkaUnavailableError: the brokers are unreachable (fail fast rather than wait).
        """
        if self.state is not State.RUNNING:
            raise NotAcceptingError(
                f"the gateway is {self.state.value}", retry_after=self._settings.retry_after
            )
        if not self._health.reachable:
            raise KafkaUnavailableError("Kafka is unreachable", retry_after=self._settings.retry_after)

    def timeout_for(self, wait: int | None) -> tuple[float, bool]:
        """Seconds to wait for a reply given ``Prefer: wait``, and whether the preference was honoured."""
        if wait is None:
            return self._settings.default_timeout, False
        if wait > self._settings.max_timeout:
            return self._settings.max_timeout, False
        return float(wait), True

    async def call(
        self,
        correlation_id: str,
        method: str,
        body: bytes,
        wait: float,
        *,
        content_type: str = protocol.DEFAULT_CONTENT_TYPE,
        trace: protocol.Headers | None = None,
        extra: protocol.Headers | None = None,
        timing: str = "",
        disconnected: asyncio.Future[None] | None = None,
        route: str = "",
        path_params: dict[str, str] | None = None,
        query: str = "",
        caller: protocol.Identity | None = None,
        stream_for: float | None = None,
        lifetime: float | None = None,
    ) -> protocol.Reply:
        """Send ``method`` with ``body`` and return the worker's reply within ``wait`` seconds.

        ``stream_for``, for a method that streams, is how long its stream may last
        (``rpc-stream-deadline``); a streamed reply's first record is returned and `parts` has
        the rest. ``lifetime`` makes a ``respond-async`` request: its deadline lies that far
        ahead instead of ``wait``, ``wait`` may be 0, and the request is acknowledged by Kafka
        before `ReplyTimeout` says that no reply came within ``wait``.

        ``timing``, if not empty, gets the ``produced`` stamp and travels as ``rpc-timing``;
        ``route``, ``path_params`` and ``query`` travel as ``rpc-route``, ``rpc-path-params`` and
        ``rpc-query`` (docs/PROTOCOL.md), ``caller`` (the authenticated caller) as ``rpc-caller``.
        ``disconnected``, if given, is done once the caller has gone: the request is
        then abandoned. Cancelling ``call`` removes the pending entry too; a reply
        arriving afterwards is dropped and counted as late.

        Raises:
            NotAcceptingError: starting or draining.
            OverloadedError: too many requests pending (shed before producing).
            KafkaUnavailableError: brokers unreachable, or the produce failed definitely.
            ProducerQueueFullError: librdkafka's queue is full.
            ReplyTimeout: no reply by the deadline (the request may have run).
            CallerDeadlineError: ``wait`` left no time; nothing was sent.
            ClientDisconnectedError: ``disconnected`` returned first.
        """
        self.ensure_accepting()
        if disconnected is not None and disconnected.done():
            raise ClientDisconnectedError("the caller closed the connection before the request was sent")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if wait <= 0 and lifetime is None:
            raise CallerDeadlineError("the deadline had passed before the request was sent")
        try:
            future = self._pending.register(correlation_id)
        except PendingFullError as exc:
            self._metrics.shed_requests.labels("pending_cap").inc()
            raise OverloadedError(
                str(exc), status=self._settings.shed_status, retry_after=self._settings.retry_after
            ) from None
        # The deadline and a disconnect fail the future from callbacks: cheaper per request
        # than a timeout scope and a watcher task, and the pending entry goes either way.
        expiry = loop.call_at(deadline, self._expire, correlation_id, wait)
        abandon = partial(self._abandon, correlation_id)
        if disconnected is not None:
            disconnected.add_done_callback(abandon)
        sending: Span | None = None
        if self._spans is not None:
            # The record carries the PRODUCER span's context: the worker's span becomes its child.
            sending = self._spans.sending(correlation_id, method)
            trace = tracing.inject(sending)
        now = time.time()
        try:
            request = protocol.Request(
                correlation_id=correlation_id,
                reply_to=self._settings.reply_topic,
                reply_partition=self._listener.partition,
                method=method,
                deadline_ms=int((now + (wait if lifetime is None else lifetime)) * 1000),
                body=body,
                content_type=content_type,
                trace=trace or [],
                extra=extra or [],
                timing=stamps.stamp(timing, "produced") if timing else "",
                route=route,
                path_params=path_params or {},
                query=query,
                caller=caller,
                stream_deadline_ms=None if stream_for is None else int((now + stream_for) * 1000),
            )
            delivered = self._produce(request, body, acknowledged=lifetime is not None, span=sending)
            waiting = future if delivered is None else self._acknowledged(correlation_id, future, delivered)
            reply = await waiting
        finally:
            expiry.cancel()
            if disconnected is not None:
                disconnected.remove_done_callback(abandon)
            self._pending.discard(correlation_id)
        if self._spans is not None:
            self._spans.arrived(reply, self._listener.partition)
        if timing and not reply.timing.startswith(request.timing):
            # The worker did not copy rpc-timing back: keep the gateway's own stamps anyway.
            reply = dataclasses.replace(reply, timing=f"{request.timing},{reply.timing}")
        return reply

    def _produce(
        self, request: protocol.Request, body: bytes, *, acknowledged: bool, span: Span | None
    ) -> asyncio.Future[Delivery] | None:
        """Produce the request record; with ``acknowledged``, return when Kafka will have it.

        Raises:
            GatewayError: the producer refused the record at once (`produce_failed`).
        """
        topic, key, headers = self._settings.request_topic, request.correlation_id.encode(), request.headers()
        if acknowledged:
            # send() never raises: a refusal fails the future, and the span ends with the ack.
            delivered = self._producer.send(topic, body, key, headers)
            delivered.add_done_callback(partial(self._delivered, request.correlation_id))
            if span is not None:
                delivered.add_done_callback(partial(_end_with, span))
            return delivered
        try:
            self._producer.produce(topic, body, key, headers)
        except DeliveryError as exc:
            if span is not None:
                tracing.fail(span, exc.error.name(), str(exc.error))
            raise self.produce_failed(exc.error) from None
        finally:
            if span is not None:
                span.end()
        return None

    def cancel(self, correlation_id: str, reason: str) -> None:
        """Tell the worker that nobody waits for ``correlation_id`` any more (a cancel record).

        It goes to the request's partition (same key), after the request; a refused one is
        only counted, since the worker's own deadline ends the work anyway.
        """
        record = protocol.Cancel(correlation_id, reason)
        try:
            self._producer.produce(
                self._settings.request_topic, b"", correlation_id.encode(), record.headers()
            )
        except DeliveryError as exc:
            self._metrics.produce_errors.labels(exc.error.name()).inc()
            return
        self._metrics.cancels.labels(reason).inc()

    def parts(self, correlation_id: str) -> PartStream | None:
        """The rest of a streamed reply whose first record `call` returned."""
        return self._router.stream(correlation_id)

    def position(self) -> tuple[int, int]:
        """This replica's reply partition and an offset no reply to a request sent from now on
        precedes (a result location's lower bound)."""
        return self._listener.partition or 0, self._listener.offset

    async def _acknowledged(
        self,
        correlation_id: str,
        future: asyncio.Future[protocol.Reply],
        delivered: asyncio.Future[Delivery],
    ) -> protocol.Reply:
        """The reply, or, when none came in time, `ReplyTimeout` once Kafka has the request."""
        try:
            return await future
        except ReplyTimeout:
            try:
                await delivered
            except DeliveryError as exc:
                raise self.produce_failed(exc.error) from None
            self._router.detach(correlation_id)
            raise

    def _delivered(self, correlation_id: str, delivered: asyncio.Future[Delivery]) -> None:
        error = None if delivered.cancelled() else delivered.exception()
        # Counted here only if it fails the waiting caller; after a timeout `_acknowledged` counts it.
        if isinstance(error, DeliveryError) and self._pending.fail(
            correlation_id, delivery_error(error.error)
        ):
            self._metrics.produce_errors.labels(error.error.name()).inc()

    def produce_failed(self, error: KafkaError) -> GatewayError:
        """Count a refused produce and return the gateway error that answers it."""
        self._metrics.produce_errors.labels(error.name()).inc()
        return delivery_error(error)

    def request_failed(self, message: Message, error: KafkaError) -> None:
        """`AsyncProducer` ``on_failed``: a request Kafka refused later fails its caller (loop thread)."""
        key = message.key()
        failure = self.produce_failed(error)
        self._pending.fail(key.decode("utf-8", "replace") if key else "", failure)

    def _expire(self, correlation_id: str, wait: float) -> None:
        self._pending.fail(correlation_id, ReplyTimeout(f"no reply within {wait:g} s"))

    def _abandon(self, correlation_id: str, disconnected: asyncio.Future[None]) -> None:
        if not disconnected.cancelled():
            self._pending.fail(correlation_id, ClientDisconnectedError("the caller closed the connection"))


def _end_with(span: Span, delivered: asyncio.Future[Delivery]) -> None:
    """End a respond-async request's PRODUCER span once Kafka has answered, failed if it refused."""
    error = None if delivered.cancelled() else delivered.exception()
    if isinstance(error, DeliveryError):
        tracing.fail(span, error.error.name(), str(error.error))
    span.end()
