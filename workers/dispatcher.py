"""From a consumed record to what must be produced: a reply, a dead letter, both or nothing.

No Kafka client here: `Dispatcher.dispatch` decodes and validates the record, checks the
deadline, runs the handler (retrying `TransientError` with `RetryPolicy`, never past the
deadline) and returns an `Outcome` for the runtime to publish.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
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
)
from kafkarpc.stamps import stamp
from workers.deadletter import DeadLetter, Reason, dead_letter_for
from workers.errors import HandlerError, TransientError
from workers.registry import Registration
from workers.response import Response
from workers.retries import RetryPolicy

if TYPE_CHECKING:
    from kafkarpc.clients import Message, RecordHeaders
    from workers.metrics import WorkerMetrics
    from workers.registry import HandlerRegistry
    from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to produce for one request record; all None means: nothing (expired)."""

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
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._executor = executor
        self._clock = clock
        self._retries = RetryPolicy(
            attempts=settings.retry_attempts,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
            retries=metrics.retries,
            clock=clock,
        )

    async def dispatch(self, message: Message) -> Outcome:
        """The outcome for one record; never raises for bad input or failing handlers."""
        checked = self._check(message)
        if isinstance(checked, Outcome):
            return checked
        request, registration = checked
        if self._expired(request):
            self._metrics.expired.inc()
            log.info("request expired before handling", extra={"method": request.method})
            return Outcome()
        reply = await self._answer(registration, request)
        if reply is None:
            return Outcome()
        return Outcome(reply, request.reply_to, request.reply_partition)

    def _check(self, message: Message) -> tuple[Request, Registration] | Outcome:
        """The decoded request and its handler, or the poison outcome."""
        headers = message.headers() or []
        twice = duplicated(headers)
        if twice is not None:
            # Readers disagree on which copy wins, so nobody is answered (RELIABILITY.md 1.4).
            detail = f"header {twice} appears more than once"
            return self._poison(message, Reason.DUPLICATE_HEADER, detail)
        try:
            request = Request.from_record(message.value(), headers)
        except ProtocolError as exc:
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

    async def _answer(self, registration: Registration, request: Request) -> Reply | None:
        """Run the handler under the deadline; None when the deadline passed first."""
        method = request.method
        received = self._clock()
        scope = asyncio.timeout(request.deadline_ms / 1000 - self._clock())
        started = time.perf_counter()
        reply: Reply | None
        try:
            async with scope:
                result, headers = await self._retries.run(
                    partial(self._invoke, registration, request), method, request.deadline_ms / 1000
                )
            reply = _success(request, registration, result, headers)
        except TimeoutError as exc:
            reply = None if scope.expired() else _failure(request, exc)
        except Exception as exc:
            reply = _failure(request, exc)
        finally:
            self._metrics.handler_duration.labels(method).observe(time.perf_counter() - started)
        if reply is None or self._expired(request):
            # The gateway has already answered 504; a late reply would only be dropped there.
            self._metrics.expired.inc()
            self._metrics.handled.labels(method, "expired").inc()
            log.info("request expired while handling", extra={"method": method})
            return None
        outcome = "ok" if reply.status < 400 else "client_error" if reply.status < 500 else "server_error"
        self._metrics.handled.labels(method, outcome).inc()
        if request.timing:
            timing = stamp(stamp(request.timing, "worker_in", received), "worker_out", self._clock())
            reply = dataclasses.replace(reply, timing=timing)
        return reply

    async def _invoke(self, registration: Registration, request: Request) -> tuple[Any, Mapping[str, str]]:
        """The handler's result and the headers it set; a typed handler's arguments validated first."""
        if registration.endpoint.typed:
            bound = registration.endpoint.bind(request)  # HandlerError 422 when invalid
            call = partial(registration.function, **bound.arguments)
            headers: Mapping[str, str] = {} if bound.headers is None else bound.headers
        else:
            call, headers = partial(registration.function, request), {}
        if registration.is_async:
            return await call(), headers
        # The thread gets a copy of the context, so its logs carry the correlation id.
        run = partial(contextvars.copy_context().run, call)
        return await asyncio.get_running_loop().run_in_executor(self._executor, run), headers


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
