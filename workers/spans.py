"""`WorkerSpans`: the worker's side of a request's trace.

Per request record, continuing the trace its ``traceparent`` carries (the gateway's PRODUCER
span): a CONSUMER span ``process <topic>`` around everything the worker does with it, an
INTERNAL span ``handle <method>`` around the handler (retries included), and a PRODUCER span
``send <reply topic>`` whose context the reply carries back, so the trace survives the reply
hop (a streamed reply's parts and end record carry it too). A handler's own spans (a database
call, an HTTP client) nest under ``handle``: its context is current there, in its thread too.
A dead letter and an error reply (5xx) mark their span failed with ``error.type`` and why; a
request that got no reply (its deadline passed, or it was cancelled) says ``no_reply``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson
from opentelemetry import context, trace

from kafkarpc import protocol, tracing
from kafkarpc.tracing import Span, SpanKind, Tracer

if TYPE_CHECKING:
    from kafkarpc.clients import Message
    from workers.dispatcher import Outcome


class WorkerSpans:
    """Starts the spans of one worker process."""

    def __init__(self, tracer: Tracer, group: str) -> None:
        self._tracer = tracer
        self._group = group

    @contextlib.contextmanager
    def processing(self, message: Message) -> Iterator[Span]:
        """The CONSUMER span of one request record, current while the block runs."""
        headers = message.headers()
        topic = message.topic() or ""
        correlation_id = protocol.correlation_id_of(headers) or ""
        attributes = tracing.messaging("process", topic, correlation_id, message.partition())
        attributes["messaging.kafka.offset"] = message.offset() or 0
        attributes["messaging.consumer.group.name"] = self._group
        span = self._tracer.start_span(
            f"process {topic}",
            context=tracing.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        with _current(span):
            yield span

    @contextlib.contextmanager
    def handling(self, method: str) -> Iterator[Span]:
        """The span around a handler, current while it runs."""
        span = self._tracer.start_span(f"handle {method}", attributes={"rpc.method": method})
        with _current(span):
            yield span

    @contextlib.contextmanager
    def streaming(self, request: protocol.Request) -> Iterator[protocol.Request]:
        """The PRODUCER span of a streamed reply, for the block: ``request`` with that span's
        context as its trace, which every part and the end record copy."""
        span = self.replying(request.reply_to, request.reply_partition, request.correlation_id)
        try:
            yield dataclasses.replace(request, trace=tracing.inject(span))
        except Exception as exc:
            tracing.fail(span, type(exc).__qualname__, "the stream could not be sent")
            raise
        finally:
            span.end()

    def replying(self, reply_to: str, partition: int | None, correlation_id: str) -> Span:
        """The PRODUCER span of a reply; the reply's ``traceparent`` names it (`tracing.inject`)."""
        attributes = tracing.messaging("send", reply_to, correlation_id, partition)
        return self._tracer.start_span(f"send {reply_to}", kind=SpanKind.PRODUCER, attributes=attributes)

    @staticmethod
    def answered(span: Span, reply: protocol.Reply | None) -> None:
        """Record the handler's answer: its status, or that there is none (deadline or cancel)."""
        if reply is None:
            span.set_attribute("rpcworker.outcome", "no_reply")
            return
        span.set_attribute("rpc.response.status_code", reply.status)
        if reply.status >= 500:
            tracing.fail(span, str(reply.status), _detail(reply))

    @staticmethod
    def concluded(span: Span, outcome: Outcome) -> None:
        """Record what came of a request record; a dead letter fails its span."""
        letter = outcome.dead_letter
        if letter is not None:
            detail = dict(letter.headers).get(protocol.DEAD_LETTER_DETAIL) or b""
            tracing.fail(span, "dead_letter", f"{letter.reason.value}: {detail.decode(errors='replace')}")
        elif outcome.reply is None:
            span.set_attribute("rpcworker.outcome", "no_reply")


@contextlib.contextmanager
def _current(span: Span) -> Iterator[None]:
    """``span`` current for the block; ended after it, failed by an exception escaping it."""
    token = context.attach(trace.set_span_in_context(span))
    try:
        yield
    except Exception as exc:
        span.record_exception(exc)
        tracing.fail(span, type(exc).__qualname__, str(exc))
        raise
    finally:
        context.detach(token)
        span.end()


def _detail(reply: protocol.Reply) -> str:
    """The problem document's ``detail``, or the status when it has none."""
    try:
        detail = orjson.loads(reply.body).get("detail")
    except (orjson.JSONDecodeError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else f"the worker answered {reply.status}"
