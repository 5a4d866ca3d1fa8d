"""From a consumed record to what must be produced: a reply, a dead letter, both or nothing.

No Kafka client here: `Dispatcher.dispatch` decodes and validates the record, checks the
deadline, runs the handler (retrying `TransientError` with `RetryPolicy`, never past the
deadline) and returns an `Outcome` for the runtime to publish. A streaming handler's parts
cannot wait for that: they go out through a `ReplyStream` as they come, and its outcome holds
at most a dead letter (or a whole reply, when it failed before its first part).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from kafkarpc import logs
from kafkarpc.errors import ProtocolError
from kafkarpc.protocol import (
    CORRELATION_ID,
    CORRELATION_ID_PATTERN,
    REPLY_PARTITION,
    REPLY_TO,
    Reply,
    Request,
    duplicated,
    is_cancel,
)
from kafkarpc.series import LabelledSeries
from kafkarpc.stamps import stamp
from workers.call import Call
from workers.deadletter import DeadLetter, Reason, dead_letter_for
from workers.deadlines import Deadlines
from workers.errors import HandlerError, TransientError
from workers.registry import Registration
from workers.response import Response
from workers.retries import RetryPolicy

if TYPE_CHECKING:
    from kafkarpc.clients import Message, RecordHeaders
    from workers.metrics import WorkerMetrics
    from workers.registry import HandlerRegistry
    from workers.replystream import ReplyStream
    from workers.settings import WorkerSettings
    from workers.spans import WorkerSpans

log = logging.getLogger(__name__)

StreamOpener = Callable[[str, "int | None", bytes], "ReplyStream"]
"""Opens the `ReplyStream` for ``(reply topic, reply partition or None, key)``."""

# What a stream's next part is once the handler has no more.
_END: Any = object()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to produce for one request record; all None means: nothing (expired, cancelled, or
    a streamed reply, which is out already)."""

    reply: Reply | None = None
    """The reply, if the caller gets one."""
    reply_to: str = ""
    """Topic for ``reply``."""
    reply_partition: int | None = None
    """Partition for ``reply``; None lets the producer choose."""
    dead_letter: DeadLetter | None = None
    """The dead letter, if the record is poison."""


class Dispatcher:
    """Decides and computes the answer to each request record."""

    def __init__(
        self,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        executor: Executor,
        clock: Callable[[], float] = time.time,
        *,
        streams: StreamOpener | None = None,
        spans: WorkerSpans | None = None,
    ) -> None:
        self._registry = registry
        self._spans = spans
        self._settings = settings
        self._metrics = metrics
        self._executor = executor
        self._clock = clock
        self._streams = streams
        self._deadlines = Deadlines()
        self._outcomes = LabelledSeries(metrics.handled)
        self._durations = LabelledSeries(metrics.handler_duration)
        self._retries = RetryPolicy(
            attempts=settings.retry_attempts,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
            retries=metrics.retries,
            clock=clock,
        )

    async def dispatch(self, message: Message, call: Call | None = None) -> Outcome:
        """The outcome for one record; never raises for bad input or failing handlers.

        ``call`` is how the runtime cancels the request (`Call.cancel`): a cancelled request
        gets no reply and no dead letter, since nobody waits for either.
        """
        call = call or Call()
        checked = self._check(message)
        if isinstance(checked, Outcome):
            return checked
        request, registration = checked
        if self._expired(request):
            self._metrics.expired.inc()
            log.info("request expired before handling", extra={"method": request.method})
            return Outcome()
        if call.cancelled:
            self._cancelled(request.method)
            return Outcome()
        if self._spans is not None:
            with self._spans.handling(request.method) as span:
                outcome = await self._handle(message, registration, request, call)
                if outcome.reply is not None or not registration.streaming:  # else: a stream is out
                    self._spans.answered(span, outcome.reply)
            return outcome
        return await self._handle(message, registration, request, call)

    async def _handle(
        self, message: Message, registration: Registration, request: Request, call: Call
    ) -> Outcome:
        if registration.streaming:
            if self._spans is None:
                return await self._stream(message, registration, request, call)
            # The parts and the end record carry the stream's PRODUCER span, as a reply carries its own.
            with self._spans.streaming(request) as traced:
                return await self._stream(message, registration, traced, call)
        reply = await self._answer(registration, request, call)
        if reply is None:
            return Outcome()
        return Outcome(reply, request.reply_to, request.reply_partition)

    def _check(self, message: Message) -> tuple[Request, Registration] | Outcome:
        """The decoded request and its handler, or the poison outcome."""
        headers = message.headers() or []
        try:
            request = Request.from_record(message.value(), headers)
        except ProtocolError as exc:
            # Decoding rejects a duplicate too; looked for only then, since it rarely happens.
            twice = duplicated(headers)
            if twice is not None:
                # Readers disagree on which copy wins, so nobody is answered (RELIABILITY.md 1.4).
                detail = f"header {twice} appears more than once"
                return self._poison(message, Reason.DUPLICATE_HEADER, detail)
            if is_cancel(headers):
                # A cancel record the runtime could not read (it takes readable ones at once):
                # poison like any unreadable record, but nobody waits for an answer to it.
                return self._poison(message, Reason.INVALID_REQUEST, f"cancel record: {exc}")
            return self._poison(message, Reason.INVALID_REQUEST, str(exc), _reply_address(headers), 400)
        logs.correlation_id.set(request.correlation_id)
        if request.reply_to not in self._settings.reply_topics:
            # Never let a record steer replies to an arbitrary topic (RELIABILITY.md 5).
            detail = f"reply topic {request.reply_to!r} is not allowed"
            return self._poison(message, Reason.REPLY_TOPIC_NOT_ALLOWED, detail)
        registration = self._registry.get(request.method)
        if registration is None:
            address = (request.correlation_id, request.reply_to, request.reply_partition)
            status = None if self._expired(request) else 404
            detail = f"no handler for method {request.method!r}"
            return self._poison(message, Reason.UNKNOWN_METHOD, detail, address, status)
        return request, registration

    def _expired(self, request: Request) -> bool:
        return self._clock() * 1000 >= request.deadline_ms

    def _poison(
        self,
        message: Message,
        reason: Reason,
        detail: str,
        address: tuple[str, str, int | None] | None = None,
        status: int | None = None,
    ) -> Outcome:
        letter = dead_letter_for(message, reason, detail)
        log.warning("dead-lettering request", extra={"reason": reason.value, "detail": detail})
        if address is None or status is None or address[1] not in self._settings.reply_topics:
            return Outcome(dead_letter=letter)
        correlation_id, reply_to, partition = address
        reply = Reply.problem(correlation_id, status, _phrase(status), detail)
        return Outcome(reply, reply_to, partition, letter)

    async def _answer(self, registration: Registration, request: Request, call: Call) -> Reply | None:
        """Run the handler under the deadline; None when the deadline passed first or it was cancelled."""
        method = request.method
        received = self._clock()
        scope = asyncio.timeout(None)  # armed by `Deadlines` only if the handler waits
        started = time.perf_counter()
        reply: Reply | None
        try:
            async with scope:
                with call.watching(scope):
                    self._deadlines.arm_later(call, request.deadline_ms / 1000 - received)
                    result, headers = await self._retries.run(
                        partial(self._invoke, registration, request, call), method, request.deadline_ms / 1000
                    )
            reply = _success(request, registration, result, headers)
        except TimeoutError as exc:
            reply = self._timed_out(scope, call, request, exc)
        except asyncio.CancelledError:
            call.abandon()  # the drain gave up on it: a thread handler can stop too
            raise
        except Exception as exc:
            reply = _failure(request, exc)
        finally:
            self._durations(method).observe(time.perf_counter() - started)
        if call.cancelled:
            self._cancelled(method)
            return None
        return self._conclude(request, call, reply, received)

    async def _stream(
        self, message: Message, registration: Registration, request: Request, call: Call
    ) -> Outcome:
        """Run a streaming handler: its parts go out as they come, then the end record.

        A handler that fails before its first part is answered like any other, with a whole
        reply. Past the first part, ``rpc-stream-deadline`` (or else ``rpc-deadline``) bounds it.
        """
        if self._streams is None:
            raise RuntimeError("a Dispatcher serving streaming handlers needs `streams`")
        method = request.method
        stream = self._streams(request.reply_to, request.reply_partition, request.correlation_id.encode())
        received = self._clock()
        scope = asyncio.timeout(request.deadline_ms / 1000 - received)
        started = time.perf_counter()
        end: Reply | None
        try:
            async with scope:
                with call.watching(scope):
                    await self._parts(
                        registration, request, call, scope=scope, stream=stream, received=received
                    )
            end = Reply(request.correlation_id, 200, b"", trace=request.trace)
        except TimeoutError as exc:
            end = self._timed_out(scope, call, request, exc)
            if end is None and stream.sent and not call.cancelled:
                # The caller may still be reading: tell it why the stream stops here.
                detail = "the stream reached its deadline"
                end = Reply.problem(request.correlation_id, 504, _phrase(504), detail, request.trace)
        except asyncio.CancelledError:
            call.abandon()
            raise
        except Exception as exc:
            end = _failure(request, exc)
        finally:
            self._durations(method).observe(time.perf_counter() - started)
        if call.cancelled:
            # Its parts are still acknowledged before the offset is finished; nobody waits for
            # a refusal, so there is nothing to dead-letter.
            with contextlib.suppress(Exception):
                await stream.close()
            self._cancelled(method)
            return Outcome()
        if end is None or (not stream.sent and end.is_error):
            # Nothing went out: a whole reply, as from any handler (none once past the deadline).
            reply = self._conclude(request, call, end, received)
            return Outcome() if reply is None else Outcome(reply, request.reply_to, request.reply_partition)
        if stream.refused is not None:
            # A part is missing; the end record at least tells the gateway at once.
            detail = "a part of the reply could not be delivered"
            end = Reply.problem(request.correlation_id, 500, _phrase(500), detail, request.trace)
        await stream.send(end, final=True)
        try:
            await stream.close()
        except Exception as exc:
            log.error("streamed reply undeliverable; dead-lettering the request", extra={"error": str(exc)})
            self._handled(method, 500)
            return Outcome(dead_letter=dead_letter_for(message, Reason.REPLY_UNDELIVERABLE, str(exc)))
        self._handled(method, end.status)
        return Outcome()

    async def _parts(
        self,
        registration: Registration,
        request: Request,
        call: Call,
        *,
        scope: asyncio.Timeout,
        stream: ReplyStream,
        received: float,
    ) -> None:
        """Send the handler's parts until it ends, raises, or Kafka refuses one."""
        parts, item, headers = await self._retries.run(
            partial(self._open, registration, request, call), request.method, request.deadline_ms / 1000
        )
        try:
            while item is not _END and stream.refused is None:
                if stream.sent:
                    await stream.send(_part(request, registration, item, {}))
                else:
                    first = _part(request, registration, item, headers, first=True)
                    await stream.send(_stamped(first, request, call, received, self._clock()))
                    # The first part is out: from here on the stream's own deadline bounds it.
                    ends = (request.stream_deadline_ms or request.deadline_ms) / 1000
                    if not scope.expired():
                        scope.reschedule(asyncio.get_running_loop().time() + ends - self._clock())
                self._metrics.stream_parts.labels(request.method).inc()
                item = await anext(parts, _END)
        finally:
            await parts.aclose()  # a handler stopped early runs its cleanup (finally, async with)

    async def _open(
        self, registration: Registration, request: Request, call: Call
    ) -> tuple[AsyncGenerator[Any, None], Any, Mapping[str, str]]:
        """Start a streaming handler: its parts, the first of them (`_END` if none), its headers.

        The first part belongs to the attempt, so a `TransientError` before it is retried.
        """
        function, headers = self._bind(registration, request, call)
        parts = function() if registration.is_async else self._pooled(function())
        return parts, await anext(parts, _END), headers

    async def _pooled(self, parts: Generator[Any, None, None]) -> AsyncGenerator[Any, None]:
        """A plain generator's parts, each step in the thread pool (it may block)."""
        context = contextvars.copy_context()  # so its logs carry the correlation id
        step: Future[Any] | None = None
        try:
            while True:
                step = self._executor.submit(context.run, _next, parts)
                item = await asyncio.wrap_future(step)
                if item is _END:
                    return
                yield item
        finally:
            if step is None or step.done():
                self._close(context, parts)
            else:  # abandoned mid-step: the thread is still in it
                step.add_done_callback(lambda _: self._close(context, parts))

    def _close(self, context: contextvars.Context, parts: Generator[Any, None, None]) -> None:
        """Close a generator left suspended, so its ``finally`` and ``with`` blocks release what they
        hold; in the pool, since that may block."""
        if inspect.getgeneratorstate(parts) == inspect.GEN_SUSPENDED:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: the process is exiting
                self._executor.submit(context.run, parts.close)

    async def _invoke(
        self, registration: Registration, request: Request, call: Call
    ) -> tuple[Any, Mapping[str, str]]:
        """The handler's result and the headers it set; a typed handler's arguments validated first."""
        function, headers = self._bind(registration, request, call)
        if registration.is_async:
            return await function(), headers
        # The thread gets a copy of the context, so its logs carry the correlation id.
        run = partial(contextvars.copy_context().run, function)
        return await asyncio.get_running_loop().run_in_executor(self._executor, run), headers

    def _bind(
        self, registration: Registration, request: Request, call: Call
    ) -> tuple[Callable[[], Any], Mapping[str, str]]:
        """The handler with its arguments, and the headers dict it fills (HandlerError 422 when invalid)."""
        endpoint = registration.endpoint
        if not endpoint.typed:
            return partial(registration.function, request), {}
        bound = endpoint.bind(request, call.cancellation if endpoint.takes_cancellation else None)
        headers: Mapping[str, str] = {} if bound.headers is None else bound.headers
        return partial(registration.function, **bound.arguments), headers

    def _timed_out(
        self, scope: asyncio.Timeout, call: Call, request: Request, exc: TimeoutError
    ) -> Reply | None:
        """A problem reply for the handler's own TimeoutError; None when its deadline (or a cancel) hit."""
        if not scope.expired():
            return _failure(request, exc)
        call.abandon()  # a thread handler is no longer waited for: let it stop too
        return None

    def _conclude(self, request: Request, call: Call, reply: Reply | None, received: float) -> Reply | None:
        """The whole reply to send, counted and stamped; None when it would come too late."""
        method = request.method
        if reply is None or self._expired(request):
            # The gateway has already answered 504; a late reply would only be dropped there.
            self._metrics.expired.inc()
            self._outcomes(method, "expired").inc()
            log.info("request expired while handling", extra={"method": method})
            return None
        self._handled(method, reply.status)
        return _stamped(reply, request, call, received, self._clock())

    def _handled(self, method: str, status: int) -> None:
        outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
        self._outcomes(method, outcome).inc()

    def _cancelled(self, method: str) -> None:
        self._outcomes(method, "cancelled").inc()
        log.info("request cancelled: nobody waits for its answer", extra={"method": method})


def _success(request: Request, registration: Registration, result: Any, headers: Mapping[str, str]) -> Reply:
    if isinstance(result, Response):
        body, status, content_type = result.body, result.status, result.content_type
        headers = {**headers, **result.headers}
    elif isinstance(result, bytes):
        body, status, content_type = result, 200, "application/octet-stream"
    elif isinstance(result, str):
        body, status, content_type = result.encode(), 200, "text/plain; charset=utf-8"
    elif result is None:
        body, status, content_type = b"", 204, "application/octet-stream"
    else:
        data = registration.endpoint.serialise(result)
        body, status, content_type = orjson.dumps(data), registration.status_code, "application/json"
    return Reply(
        request.correlation_id,
        status,
        body,
        content_type,
        request.trace,
        response_headers={name.lower(): value for name, value in headers.items()},
    )


def _part(
    request: Request, registration: Registration, item: Any, headers: Mapping[str, str], first: bool = False
) -> Reply:
    """One part of a streamed reply, serialised like a whole one; only the first has a status
    (never 204: a part follows) and headers for the caller."""
    reply = _success(request, registration, item, headers)
    if first and reply.status != 204:
        return reply
    return dataclasses.replace(reply, status=200, response_headers={})


def _next(parts: Generator[Any, None, None]) -> Any:
    return next(parts, _END)


def _stamped(reply: Reply, request: Request, call: Call, received: float, now: float) -> Reply:
    """``reply`` with the worker's ``rpc-timing`` stamps, when the request asked for them."""
    if not request.timing:
        return reply
    timing = request.timing
    if call.fetched_at is not None:
        timing = stamp(timing, "worker_fetched", call.fetched_at)
    return dataclasses.replace(reply, timing=stamp(stamp(timing, "worker_in", received), "worker_out", now))


def _failure(request: Request, exc: Exception) -> Reply:
    if isinstance(exc, HandlerError):
        return Reply.problem(
            request.correlation_id, exc.status, exc.title, exc.detail, request.trace, **exc.members
        )
    if isinstance(exc, TransientError):
        detail = f"still failing after retries: {exc}"
        return Reply.problem(request.correlation_id, 503, _phrase(503), detail, request.trace)
    # The message may hold internals; the caller gets the type, the log gets the traceback.
    log.error("handler failed", exc_info=exc, extra={"method": request.method})
    detail = f"the handler raised {type(exc).__name__}; see the worker log for this correlation id"
    return Reply.problem(request.correlation_id, 500, _phrase(500), detail, request.trace)


def _phrase(status: int) -> str:
    return HTTPStatus(status).phrase


def _reply_address(headers: RecordHeaders) -> tuple[str, str, int | None] | None:
    """Where to send an error reply for an undecodable request, if that is unambiguous."""
    values = {
        name.lower(): value
        for name, value in headers
        if name.lower() in (CORRELATION_ID, REPLY_TO, REPLY_PARTITION)
    }
    try:
        correlation_id = (values.get(CORRELATION_ID) or b"").decode()
        reply_to = (values.get(REPLY_TO) or b"").decode()
        partition = (values.get(REPLY_PARTITION) or b"").decode("ascii")
    except UnicodeDecodeError:
        return None
    if CORRELATION_ID_PATTERN.fullmatch(correlation_id) is None or not reply_to:
        return None
    if REPLY_PARTITION in values and not partition.isdigit():
        return None
    return correlation_id, reply_to, int(partition) if partition else None
