"""The worker: consume requests, run handlers, publish replies, commit in order.

Flow per record: the consumer thread hands a batch to the loop; each record is tracked by
`OffsetTracker` and queued; up to ``concurrency`` handlers run at once; once its handler is
done, a task gives its slot to the next record, publishes the reply (and/or dead letter),
waits for Kafka's acknowledgement, and only then marks its offset finished, which stores the
partition's contiguous-done position for background auto-commit. When more than
``max_buffered`` records are held (queued, running or awaiting acknowledgement), fetching
pauses.

Cancel records (``rpc-cancel``) are not queued: each is applied as it arrives, to the request
it names (`Call.cancel`) if that is still queued or running here, and its offset is finished
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from kafkarpc.clients import ConfluentClients
from kafkarpc.connection import PRODUCER_DEFAULTS, KafkaSettings, redacted
from kafkarpc.errors import ProtocolError
from kafkarpc.producer import AsyncProducer
from kafkarpc.protocol import METHOD, Cancel, correlation_id_of
from kafkarpc.statistics import consumer_lag
from workers.call import Call
from workers.catalog import CatalogPublisher
from workers.consumer import RequestConsumer
from workers.dispatcher import Dispatcher
from workers.eventloop import loop_factory
from workers.metrics import WorkerMetrics
from workers.monitoring import MonitoringServer
from workers.offsets import OffsetTracker, Partition, PartitionOffsets
from workers.publisher import OutcomePublisher
from workers.replystream import ReplyStream
from workers.settings import CONSUMER_DEFAULTS
from workers.spans import WorkerSpans

if TYPE_CHECKING:
    from kafkarpc.clients import KafkaClients, Message
    from kafkarpc.tracing import Tracer
    from workers.registry import HandlerRegistry
    from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

# Bound on flushing queued replies after the consumer has stopped.
FLUSH_TIMEOUT = 10.0
# Records fetched per consume() call.
BATCH_SIZE = 500
# The method label of cancels for requests not (or no longer) here, or of methods not served.
UNKNOWN = "_unknown"


class Worker:
    """One worker process: a consumer-group member serving the registry's methods.

    Args:
        settings: Worker settings.
        kafka_settings: Kafka connection; every librdkafka property is configurable there.
        registry: The handlers to serve.
        clients: Builds the Kafka clients (tests pass an in-memory Kafka).
        metrics: Metric objects; a fresh registry by default.
        tracer: Traces each request (`workers.spans`); None, the default, traces nothing.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        kafka_settings: KafkaSettings,
        registry: HandlerRegistry,
        *,
        clients: KafkaClients | None = None,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.kafka_settings = kafka_settings
        self.registry = registry
        self.metrics = metrics or WorkerMetrics()
        self.ready = asyncio.Event()
        """Set once the consumer has joined the group and received its assignment, and the catalog
        entry has been offered to Kafka once (so gateways can route to this worker when it is ready)."""
        self._assigned = False
        self._announced = asyncio.Event()
        self.exit_code = 0
        """0, or 1 after a fatal error (e.g. a reply Kafka would not take)."""
        self.monitoring_port: int | None = None
        """Bound port of /metrics, /healthz, /readyz once serving."""
        self._clients = clients or ConfluentClients()
        self._clock = clock
        self._stop = asyncio.Event()
        self._tracker = OffsetTracker()
        self._backlog: deque[tuple[Message, PartitionOffsets, Call]] = deque()
        self._calls: dict[str, tuple[Message, Call]] = {}
        """Requests queued or running, by correlation id: what a cancel record can reach."""
        self._running = 0
        """Handlers running: at most ``concurrency``."""
        self._publishing = 0
        """Records whose handler is done and whose outcome is not acknowledged yet."""
        self._paused = False
        self.metrics.assigned_partitions.set_function(lambda: len(self._tracker.partitions))
        # Read at scrape time, not kept per record: two locked updates less on each request's path.
        self.metrics.in_flight.set_function(lambda: self._running)
        self.metrics.fetch_paused.set_function(
            lambda: int(self._consumer is not None and self._consumer.paused)
        )
        self._consumer: RequestConsumer | None = None
        self._producer: AsyncProducer | None = None
        self._dispatcher: Dispatcher | None = None
        self._publisher: OutcomePublisher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spans = None if tracer is None else WorkerSpans(tracer, settings.group_id)

    def run(self) -> int:
        """Serve on the loop `WorkerSettings.loop` names until SIGTERM or SIGINT, then drain.

        Returns:
            The process exit code.
        """
        with asyncio.Runner(loop_factory=loop_factory(self.settings.loop)) as runner:
            return runner.run(self._serve_with_signals())

    async def _serve_with_signals(self) -> int:
        loop = asyncio.get_running_loop()
        # SIGTERM: Kubernetes stopping the pod; SIGINT: Ctrl-C. Both drain gracefully.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self.serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return self.exit_code

    def _on_signal(self) -> None:
        if self._stop.is_set():
            # A second signal means "now", as in uvicorn: no drain, nothing more committed.
            log.warning("second signal; exiting without draining")
            os._exit(1)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop taking records; `serve` then drains in-flight work, commits and returns."""
        self._stop.set()

    async def serve(self) -> None:
        """Run until `shutdown` (or a fatal error), then drain within ``drain_timeout``."""
        self._loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self.settings.thread_count, thread_name_prefix="handler")
        callbacks = {"error_cb": self._kafka_error}
        client_id = {"client.id": f"rpc-worker-{self.settings.group_id}"}
        producer_config = self.kafka_settings.client_config({**PRODUCER_DEFAULTS, **client_id, **callbacks})
        consumer_config = self.kafka_settings.client_config(
            {
                **CONSUMER_DEFAULTS,
                **client_id,
                "group.id": self.settings.group_id,
                "stats_cb": self._statistics,
                **callbacks,
            }
        )
        methods = sorted(registration.method for registration in self.registry)
        loggable = {key: value for key, value in redacted(consumer_config).items() if not callable(value)}
        loop = type(self._loop).__module__.partition(".")[0]  # "uvloop" or "asyncio"
        log.info("starting worker", extra={"methods": methods, "loop": loop, "consumer": loggable})
        self._producer = AsyncProducer(
            self._clients,
            producer_config,
            eager=self.kafka_settings.eager_send,
            report_interval=self.settings.ack_interval,
            waited_sends=False,  # a reply's acknowledgement only finishes its offset
        )
        self._dispatcher = Dispatcher(
            self.registry,
            self.settings,
            self.metrics,
            pool,
            self._clock,
            streams=partial(ReplyStream, self._producer),
            spans=self._spans,
        )
        self._publisher = OutcomePublisher(
            self._producer, self.settings.dead_letter_topic, self.metrics, spans=self._spans
        )
        self._consumer = RequestConsumer(
            self._clients.consumer(consumer_config), self.settings.request_topic, self, BATCH_SIZE
        )
        monitoring = MonitoringServer(
            self.settings.metrics_host,
            self.settings.metrics_port,
            self.metrics.registry,
            healthy=lambda: self.exit_code == 0,
            ready=lambda: self.ready.is_set() and not self._stop.is_set(),
        )
        await monitoring.start()
        self.monitoring_port = monitoring.port
        self._producer.start()
        catalog = None
        if self.settings.catalog_topic:
            catalog = CatalogPublisher(
                self._producer,
                self.settings.catalog_topic,
                self.registry,
                group=self.settings.group_id,
                instance=self.settings.instance,
                heartbeat=self.settings.catalog_heartbeat,
                clock=self._clock,
            )
            catalog.start(announced=self._on_announced)
        else:
            self._on_announced()
        self._consumer.start()
        try:
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            waits: set[asyncio.Future[Any]] = {stop, self._consumer.stopped}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
        finally:
            self._stop.set()
            self.ready.clear()
            self._consumer.stop()
            try:
                await self._consumer.stopped
            except Exception:
                self.exit_code = 1
            if catalog is not None:
                await catalog.stop()  # withdrawn while the producer still runs
            await self._producer.stop(FLUSH_TIMEOUT)
            pool.shutdown(wait=False, cancel_futures=True)
            await monitoring.stop()
            log.info("worker stopped", extra={"exit_code": self.exit_code})

    def on_assigned(self, partitions: list[Partition]) -> None:
        """Consumer-thread report (on the loop): these partitions are ours now."""
        self._tracker.assign(partitions)
        self._assigned = True
        if self._announced.is_set():
            self.ready.set()
        log.info("partitions assigned", extra={"partitions": partitions})

    def _on_announced(self) -> None:
        self._announced.set()
        if self._assigned:
            self.ready.set()

    def on_lost(self, partitions: list[Partition]) -> None:
        """Partitions lost without a clean revocation: another member owns them, commit nothing."""
        self._tracker.forget(self._tracker.close(partitions))
        log.warning("partitions lost", extra={"partitions": partitions})

    def on_batch(self, messages: list[Message], fetched_at: float) -> None:
        """A fetched batch, in offset order per partition."""
        assert self._producer is not None
        # The loop is awake anyway: the acknowledgements handed over since it last was need no
        # wake-up of their own (`AsyncProducer.collect`).
        self._producer.collect()
        self.metrics.records_consumed.inc(len(messages))
        for message in messages:
            headers = message.headers()
            offset = message.offset() or 0
            state = self._tracker.track((message.topic() or "", message.partition() or 0), offset)
            try:
                cancel = Cancel.from_record(headers)
            except ProtocolError:
                cancel, correlation_id = None, None  # the dispatcher dead-letters it, unindexed
            else:
                correlation_id = None if cancel is not None else correlation_id_of(headers)
            if cancel is not None:
                # Applied now, not queued behind running handlers: it is about one of them.
                self._cancel(cancel)
                if state is not None:
                    self._complete(state, offset)
                continue
            if state is not None:
                call = Call(correlation_id, fetched_at)
                if correlation_id is not None:
                    # The first record with an id keeps the slot: a later one is a forgery or a
                    # duplicate, and must not divert a cancel from the real request.
                    self._calls.setdefault(correlation_id, (message, call))
                self._backlog.append((message, state, call))
        self._pump()
        if not self._paused and self._held >= self.settings.buffer_limit:
            self._paused = True
            assert self._consumer is not None
            self._consumer.pause()

    async def drain(self, partitions: list[Partition]) -> list[tuple[Partition, int]]:
        """Let the partitions' running handlers finish (bounded) and return positions to commit."""
        states = self._tracker.close(partitions)
        kept: deque[tuple[Message, PartitionOffsets, Call]] = deque()
        for item in self._backlog:
            if item[1].closing:
                self._forget(item[2])
            else:
                kept.append(item)
        self._backlog = kept
        tasks = set().union(*(state.tasks for state in states))
        if tasks:
            log.info("draining", extra={"in_flight": len(tasks), "partitions": partitions})
            _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
            if pending:
                # Not committed, so redelivered to the next owner: duplicates, never losses.
                log.warning("drain timeout; abandoning in-flight requests", extra={"abandoned": len(pending)})
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
        self._tracker.forget(states)
        self._flow()
        return [(state.partition, state.position) for state in states if state.position is not None]

    def _pump(self) -> None:
        while self._backlog and self._running < self.settings.concurrency and not self._stop.is_set():
            message, state, call = self._backlog.popleft()
            if state.closing:
                self._forget(call)
                continue
            if call.cancelled:
                # Cancelled while queued: nobody waits, so it never runs; its offset is done.
                self._forget(call)
                self._complete(state, message.offset() or 0)
                continue
            call.started = True
            self._running += 1
            task = asyncio.create_task(self._process(message, state, call))
            state.tasks.add(task)
            task.add_done_callback(partial(self._finished, state, call))

    def _cancel(self, cancel: Cancel) -> None:
        """Apply a cancel record to the request it names, if that is queued or running here."""
        found = self._calls.get(cancel.correlation_id)
        if found is None:
            # Answered already, or never ours: nothing left to stop.
            self.metrics.cancels.labels(UNKNOWN, "unknown").inc()
            details = {"correlation_id": cancel.correlation_id, "reason": cancel.reason}
            log.debug("cancel for no request here", extra=details)
            return
        message, call = found
        stage = "running" if call.started else "queued"
        method = self._method_label(message)
        self.metrics.cancels.labels(method, stage).inc()
        details = {"correlation_id": cancel.correlation_id, "reason": cancel.reason}
        log.info("cancelling request", extra={"method": method, "stage": stage, **details})
        call.cancel()

    def _method_label(self, message: Message) -> str:
        """The method a request record names, if served here: labels stay a bounded set."""
        for name, value in message.headers() or ():
            if name.lower() == METHOD and value is not None:
                method = value.decode("utf-8", "replace")
                return method if method in self.registry else UNKNOWN
        return UNKNOWN

    def _forget(self, call: Call) -> None:
        """The call is over (or dropped): a cancel can no longer reach it."""
        key = call.correlation_id
        if key is not None and key in self._calls and self._calls[key][1] is call:
            del self._calls[key]

    @property
    def _held(self) -> int:
        """Records in memory: queued, running, or awaiting their outcome's acknowledgement."""
        return len(self._backlog) + self._running + self._publishing

    def _handled(self, call: Call) -> None:
        """The handler is done: its slot goes to the next record while the outcome is published.

        A slot held until the acknowledgement (the reply's linger, a broker round trip and up
        to two ``ack_interval`` beats: about 8 ms under load) capped a process near
        ``concurrency`` / 8 ms records a second whatever its handlers cost (docs/PERFORMANCE.md,
        "A slot per handler"). The record still counts against ``max_buffered`` until its task
        ends.
        """
        call.handled = True
        self._running -= 1
        self._publishing += 1
        self._pump()

    def _finished(self, state: PartitionOffsets, call: Call, task: asyncio.Task[None]) -> None:
        self._forget(call)
        state.tasks.discard(task)
        if call.handled:  # its slot went to the next record in `_handled`
            self._publishing -= 1
        else:  # its handler never finished: cancelled (drain, shutdown) or failed
            self._running -= 1
            self._pump()
        self._flow()

    def _flow(self) -> None:
        # Hysteresis: resume at half the limit so pause/resume do not alternate per record.
        if self._paused and self._held <= self.settings.buffer_limit // 2:
            self._paused = False
            assert self._consumer is not None
            self._consumer.resume()

    async def _process(self, message: Message, state: PartitionOffsets, call: Call) -> None:
        assert self._dispatcher is not None
        assert self._publisher is not None
        try:
            if self._spans is None:
                outcome = await self._dispatcher.dispatch(message, call)
                self._handled(call)
                await self._publisher.publish(message, outcome)
            else:
                with self._spans.processing(message) as span:
                    outcome = await self._dispatcher.dispatch(message, call)
                    self._spans.concluded(span, outcome)
                    self._handled(call)
                    await self._publisher.publish(message, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The offset stays unfinished, so nothing after it is committed; crash-only
            # recovery (exit 1, restart, redelivery) is safer than guessing.
            log.critical("cannot publish the outcome of a request; stopping", exc_info=exc)
            self.exit_code = 1
            self.shutdown()
            return
        self._complete(state, message.offset() or 0)

    def _complete(self, state: PartitionOffsets, offset: int) -> None:
        """``offset`` is done: store the partition's position if that moved it."""
        assert self._consumer is not None
        advanced = state.finish(offset)
        if advanced and state.position is not None and self._tracker.tracked(state):
            self._consumer.store(state.partition, state.position)

    def _kafka_error(self, error: Any) -> None:
        # Called on a client thread; only fatal errors (e.g. idempotence broken) stop the worker.
        log.error("kafka client error", extra={"error": str(error)})
        if error.fatal():
            self.exit_code = 1
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.shutdown)

    def _statistics(self, statistics: str) -> None:
        self.metrics.consumer_lag.set(consumer_lag(statistics))
