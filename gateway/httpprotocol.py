"""The gateway's HTTP protocol: uvicorn's httptools protocol with four additions.

* A head limit. uvicorn caps the request line and headers only in its h11 mode; with
  httptools a caller could send megabytes of headers and the gateway would hold them
  all. The head is counted while httptools parses it and, past the limit, answered
  with 431 and a problem document before the app sees anything.
* One send() per response, through `CoalescingTransport`.
* A connection-closed future in each request's scope (`CONNECTION_CLOSED`), so the RPC
  endpoint learns of a caller leaving from a callback instead of a task per request
  waiting in ``receive()``.
* Deadlines and a cap (`gateway.connections`): a head timeout, a body timeout and an idle
  keep-alive timeout, all checked by one sweep per server instead of uvicorn's timer per
  response, and, past the connection cap, probes only. A caller cut with an answer (408,
  431) gets it before the end of stream: the gateway half-closes, drops what still arrives
  and closes at the next sweep, where closing at once could reset the answer away.

It subclasses a class of uvicorn's that is not public API and overrides the hooks in
`OVERRIDDEN`. That seam is pinned: uvicorn's version is bounded in pyproject.toml and locked
in uv.lock, ``tests/gateway/test_uvicorn_seam.py`` fails with a message naming the hook if
a uvicorn release changes one, and at start `seam_intact` checks the installed uvicorn so
that an unverified one is served with uvicorn's own h11 protocol instead (`gateway.server`).
"""

from __future__ import annotations

import asyncio
import inspect

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from kafkarpc import protocol

from .connections import Admission, Connections, OverLimit, over_limit_detail
from .transport import CoalescingTransport

CONNECTION_CLOSED = "rpcgw.connection_closed"
"""ASGI extension: ``scope["extensions"][CONNECTION_CLOSED]["future"]`` is done once the caller's
connection closes."""

# Per header line: ": " and CRLF around the name and value httptools hands over.
_LINE_OVERHEAD = 4

VERIFIED_UVICORN = "0.54."
"""The uvicorn release series `GatewayHttpProtocol` was written and tested against."""
OVERRIDDEN: dict[str, tuple[str, ...]] = {
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "data_received": ("self", "data"),
    "eof_received": ("self",),
    "handle_websocket_upgrade": ("self",),
    "on_message_begin": ("self",),
    "on_url": ("self", "url"),
    "on_header": ("self", "name", "value"),
    "on_headers_complete": ("self",),
    "on_body": ("self", "body"),
    "on_response_complete": ("self",),
    "send_400_response": ("self", "msg"),
}
"""The `HttpToolsProtocol` methods the gateway's protocol overrides, with their parameters."""


def seam_intact() -> bool:
    """Whether the installed uvicorn is the verified series and still has every overridden hook."""
    if not uvicorn.__version__.startswith(VERIFIED_UVICORN):
        return False
    for name, parameters in OVERRIDDEN.items():
        hook = getattr(HttpToolsProtocol, name, None)
        if hook is None or tuple(inspect.signature(hook).parameters) != parameters:
            return False
    return True


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; httptools reports it as a parse error."""


# Where a connection stands between requests (while one is with the app, its cycle tells more).
# Plain ints, not an Enum: a member lookup costs ~70 ns, four of them a request.
_FRESH = 0  # open, and nothing of a request received yet
_HEAD = 1  # a request head has begun
_REQUEST = 2  # the head is complete: the request is the app's (its body may still be arriving)
_IDLE = 3  # a response went out; nothing of the next request yet
_LINGERING = 4  # answered and half-closed by the gateway: input is read and dropped until it closes


def problem_response(status: int, title: str, detail: str, headers: bytes = b"") -> bytes:
    """A whole problem+json response that closes the connection, for the protocol to write itself."""
    body = protocol.problem_body(status, title, detail)
    return (
        f"HTTP/1.1 {status} {title}\r\n".encode()
        + b"content-type: "
        + protocol.PROBLEM_JSON.encode()
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + headers
        + b"connection: close\r\n\r\n"
        + body
    )


def gateway_http_protocol(
    max_head_bytes: int, connections: Connections | None = None
) -> type[HttpToolsProtocol]:
    """The gateway's `HttpToolsProtocol` class (see the module docstring).

    Args:
        max_head_bytes: the largest request line and headers; past it, 431.
        connections: the limits, counts and sweep of the server's connections; by default
            `ConnectionLimits`' defaults, with metrics no registry exports.
    """
    tracker = connections or Connections()
    limits = tracker.limits
    # Waits are stamped with the sweep's clock, up to a period early: a period more keeps every
    # limit a lower bound (a wait ends between one and two periods after its limit).
    head_limit = limits.head_timeout + tracker.period
    body_limit = limits.body_timeout + tracker.period
    idle_limit = limits.keepalive_timeout + tracker.period
    head_too_large = problem_response(
        431, "Request Header Fields Too Large", f"the request line and headers exceed {max_head_bytes} bytes"
    )
    head_timed_out = problem_response(
        408, "Request Timeout", f"the request head was not complete within {limits.head_timeout:g} s"
    )
    body_timed_out = problem_response(
        408, "Request Timeout", f"no byte of the request body arrived for {limits.body_timeout:g} s"
    )
    refused = problem_response(
        503,
        "Service Unavailable",
        over_limit_detail(limits),
        f"retry-after: {limits.retry_after}\r\n".encode(),
    )

    class GatewayHttpProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _too_large = False
        _phase = _FRESH
        _since = 0.0
        """When the current wait began, by the sweep's clock: the connection opened, a response
        went out, the head completed or a body chunk arrived."""
        _closed: asyncio.Future[None]
        _coalescing: CoalescingTransport

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._closed = self.loop.create_future()
            self._coalescing = CoalescingTransport(transport, self.loop)
            super().connection_made(self._coalescing)
            self._since = self.loop.time()
            admission = tracker.admit(self, self.connections, self.loop)
            if admission is Admission.OVER_LIMIT:
                self.app = OverLimit(self.app, tracker)
            elif admission is Admission.REFUSED:
                self._coalescing.write(refused)
                self._coalescing.close()

        def connection_lost(self, exc: Exception | None) -> None:
            tracker.release(self)
            super().connection_lost(exc)
            if not self._closed.done():
                self._closed.set_result(None)

        def data_received(self, data: bytes) -> None:
            if self._phase == _LINGERING:
                return  # the answer is out: what still arrives is read, so the close is no reset
            super().data_received(data)

        def eof_received(self) -> None:
            # uvloop closes the socket on EOF itself, past the wrapper: send what is queued first
            # (a caller that half-closes after its request still gets the answer).
            self._coalescing.flush()
            super().eof_received()

        def handle_websocket_upgrade(self) -> None:
            # The WebSocket protocol takes the connection over with the socket's own transport;
            # a pipelined request still running before it writes through, in order.
            tracker.release(self)
            self._coalescing.write_through()
            self.transport = self._coalescing.raw
            super().handle_websocket_upgrade()

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            self._phase = _HEAD
            super().on_message_begin()
            self.scope.setdefault("extensions", {})[CONNECTION_CLOSED] = {"future": self._closed}

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + _LINE_OVERHEAD)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > max_head_bytes:
                self._too_large = True
                raise _HeadTooLarge

        def on_headers_complete(self) -> None:
            self._phase = _REQUEST
            self._since = tracker.now
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._since = tracker.now
            super().on_body(body)

        def on_response_complete(self) -> None:
            # uvicorn's, less the keep-alive timer it arms for every response (a call_later and
            # its cancel, about 2 µs a request): the sweep closes idle connections instead.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._since = tracker.now
            if self._phase != _HEAD:  # else the next (pipelined) head has begun
                self._phase = _IDLE
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)

        def expire_if_overdue(self, now: float) -> str | None:
            """Close the connection if its current wait is over (`Expiring`); the reason, or None."""
            transport = self.transport
            if self._phase == _LINGERING:
                if now - self._since >= tracker.period:
                    transport.close()  # counted when it was answered
                return None
            if transport.is_closing() or not transport.is_reading():
                # Not reading: uvicorn holds back a pipelined request or an unread body, so the
                # wait is the app's, which has deadlines of its own.
                return None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return self._expire_body(cycle, now - self._since)
            return self._expire_between(now - self._since)

        def _expire_body(self, cycle: RequestResponseCycle, waited: float) -> str | None:
            # The request is the app's: only a body that stopped arriving is the caller's doing.
            if (
                not cycle.more_body
                or cycle.response_started
                or cycle.waiting_for_100_continue
                or waited < body_limit
            ):
                return None
            cycle.disconnected = True  # receive() now says http.disconnect; the app's answer is dropped
            cycle.message_event.set()
            self._close_with(body_timed_out)
            return "body_timeout"

        def _expire_between(self, waited: float) -> str | None:
            if self._phase == _IDLE:
                if waited < idle_limit:
                    return None
                self.transport.close()
                return "idle"
            if waited < head_limit:
                return None
            if self._phase == _HEAD:
                self._close_with(head_timed_out)
            else:
                self.transport.close()  # it sent nothing: no one to tell
            return "head_timeout"

        def _close_with(self, response: bytes) -> None:
            # A caller still sending when the socket closes would get a reset, which can
            # discard the answer unread: half-close after it, drop what arrives, and close at
            # the next sweep (a lingering close, as nginx and Apache do).
            self.transport.write(response)
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            self.transport.write_eof()
            self._phase = _LINGERING
            self._since = tracker.now

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers every parse error with 400; ours gets its own status.
            if not self._too_large:
                super().send_400_response(msg)
                return
            self._close_with(head_too_large)

    return GatewayHttpProtocol
