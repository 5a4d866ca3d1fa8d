"""`HeaderPolicy`: which caller headers travel to Kafka, which reply headers reach the caller.

Reserved names (``rpc-*``) sent by a caller are refused with 400 rather than
stripped, so a hostile or confused client learns at once. ``content-type`` and
``traceparent``/``tracestate`` are protocol headers: the gateway validates them
and sets them once itself. Any other header travels only if its name is on the
configured allow-list; the rest (host, cookies, authorization, ...) stay behind.
Forwarded values must be UTF-8 text (the wire contract promises workers text), and a
``traceparent`` with an all-zero trace or parent id is dropped, as W3C trace-context requires.

The other way, a worker's ``rpc-response-headers`` reach the caller when the name is one of
`ALWAYS_PASSED` or on the operator's list, never one of `NEVER_PASSED`, and the value is
printable ASCII of at most `RESPONSE_VALUE_MAX` bytes; any other is dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kafkarpc import protocol

from .errors import BadRequestError, HeadersTooLargeError

PREFER = b"prefer"
ACCEPT = b"accept"
CONTENT_LENGTH = b"content-length"
# W3C trace-context: version-traceid-parentid-flags, lowercase hex; later versions may append fields.
TRACEPARENT_PATTERN = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[\x21-\x7e]*)?")
ZERO_TRACE_ID = b"0" * 32
ZERO_PARENT_ID = b"0" * 16
TRACESTATE_MAX = 512
CONTENT_TYPE_MAX = 255
# Reply headers a worker may always give the caller, and those it never may: hop-by-hop and
# framing headers (RFC 9110 §7.6.1), and what the gateway itself sets.
ALWAYS_PASSED = frozenset({"location", "etag", "cache-control", "content-language", "retry-after"})
NEVER_PASSED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-type",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "date",
        "server",
        "x-correlation-id",
        "preference-applied",
        "server-timing",
    }
)
RESPONSE_VALUE_MAX = 4_096
_CONTENT_TYPE = protocol.CONTENT_TYPE.encode()
_TRACEPARENT = protocol.TRACEPARENT.encode()
_TRACESTATE = protocol.TRACESTATE.encode()
_RESERVED_PREFIX = protocol.RESERVED_PREFIX.encode()


@dataclass(frozen=True, slots=True)
class Admitted:
    """The parts of a caller's headers that travel with the request."""

    content_type: str = protocol.DEFAULT_CONTENT_TYPE
    trace: protocol.Headers = field(default_factory=list)
    extra: protocol.Headers = field(default_factory=list)
    wait: int | None = None
    """Seconds from ``Prefer: wait=N`` (RFC 7240), if the caller sent one."""
    respond_async: bool = False
    """Whether the caller sent ``Prefer: respond-async`` (RFC 7240 §4.1)."""
    accept: bytes = b""
    """The caller's ``Accept`` (all of them, comma-joined): how it takes a streamed reply."""
    content_length: int | None = None
    """The announced body size, if the caller sent a well-formed one (the server enforces it)."""


class HeaderPolicy:
    """Admits caller headers; see the module docstring for the rules."""

    def __init__(self, forward: Iterable[str], max_forward_bytes: int, respond: Iterable[str] = ()) -> None:
        self._forward = frozenset(name.lower().encode() for name in forward)
        self._max_forward_bytes = max_forward_bytes
        self._respond = ALWAYS_PASSED | {name.lower() for name in respond}

    def admit(self, raw: Iterable[tuple[bytes, bytes]]) -> Admitted:
        """Check ``raw`` ASGI headers (lowercase names) and keep what may travel.

        Raises:
            BadRequestError: a reserved name, a duplicated or malformed protocol header, or a
                duplicated forwarded header.
            HeadersTooLargeError: the allow-listed headers exceed the size limit.
        """
        content_type: bytes | None = None
        traceparent: bytes | None = None
        tracestate: list[bytes] = []
        extra: protocol.Headers = []
        size = 0
        wait: int | None = None
        respond_async = False
        accept = b""
        content_length: int | None = None
        for name, value in raw:
            if name.startswith(_RESERVED_PREFIX):
                raise BadRequestError(f"header {name.decode('latin-1')!r} is reserved for the gateway")
            if name == _CONTENT_TYPE:
                content_type = _once(name, content_type, value)
            elif name == _TRACEPARENT:
                traceparent = _once(name, traceparent, value)
            elif name == _TRACESTATE:
                tracestate.append(value)
            elif name == PREFER:
                found, asynchronous = preferences(value)
                wait = found if wait is None else wait
                respond_async = respond_async or asynchronous
            elif name == CONTENT_LENGTH:
                # Past 20 digits it is over any limit; int() of thousands of digits would raise.
                content_length = int(value[:21]) if value.isdigit() else None
            else:
                if name == ACCEPT:
                    accept = value if not accept else accept + b"," + value
                if name in self._forward:
                    size += _forward(name, value, extra)
        if size > self._max_forward_bytes:
            raise HeadersTooLargeError(
                f"forwarded headers take {size} bytes, limit {self._max_forward_bytes}"
            )
        return Admitted(
            content_type=_content_type(content_type),
            trace=_trace(traceparent, tracestate),
            extra=extra,
            wait=wait,
            respond_async=respond_async,
            accept=accept,
            content_length=content_length,
        )

    def for_caller(
        self, headers: dict[str, str], dropped: Callable[[str], object]
    ) -> list[tuple[bytes, bytes]]:
        """The reply headers a worker set that may reach the caller; ``dropped(reason)`` for the rest."""
        passed: list[tuple[bytes, bytes]] = []
        for name, value in headers.items():
            lowered = name.lower()
            if lowered not in self._respond or lowered in NEVER_PASSED or lowered.startswith("proxy-"):
                dropped("not_allowed")
            elif len(value) > RESPONSE_VALUE_MAX or not value.isascii() or not value.isprintable():
                dropped("invalid_value")
            else:
                passed.append((lowered.encode(), value.encode()))
        return passed


def prefer_wait(value: bytes) -> int | None:
    """The ``wait`` preference in one ``Prefer`` header value, or None (RFC 7240 §4.3)."""
    return preferences(value)[0]


def preferences(value: bytes) -> tuple[int | None, bool]:
    """The ``wait`` seconds and whether ``respond-async`` is asked, from one ``Prefer`` value.

    Unknown or malformed preferences are ignored, as RFC 7240 §2 requires.
    """
    wait: int | None = None
    respond_async = False
    for preference in value.decode("latin-1").split(","):
        name, _, rest = preference.split(";", 1)[0].partition("=")
        name = name.strip().lower()
        if name == "respond-async":
            respond_async = True
        elif name == "wait" and wait is None:
            seconds = rest.strip().strip('"')
            wait = int(seconds) if seconds.isascii() and seconds.isdigit() else None
    return wait, respond_async


def accepts_event_stream(accept: bytes) -> bool:
    """Whether ``Accept`` names ``text/event-stream`` with a quality above zero (RFC 9110 §12.5.1)."""
    for item in accept.lower().split(b","):
        media, *parameters = item.split(b";")
        if media.strip() != b"text/event-stream":
            continue
        for parameter in parameters:
            name, _, quality = parameter.partition(b"=")
            if name.strip() == b"q":
                try:
                    return float(quality.strip()) > 0
                except ValueError:
                    return False
        return True
    return False


def _forward(name: bytes, value: bytes, extra: protocol.Headers) -> int:
    """Add an allow-listed header to ``extra``; returns the bytes it takes."""
    # One value per name: readers of a record disagree on which duplicate wins
    # (an idempotency key must not depend on who reads it).
    text = name.decode("latin-1")
    if any(seen == text for seen, _ in extra):
        raise BadRequestError(f"header {text!r} must appear at most once")
    if not value.isascii():
        _utf8(text, value)
    extra.append((text, value))
    return len(name) + len(value)


def _once(name: bytes, seen: bytes | None, value: bytes) -> bytes:
    if seen is not None:
        raise BadRequestError(f"header {name.decode()!r} must appear at most once")
    return value


def _content_type(value: bytes | None) -> str:
    if value is None:
        return protocol.DEFAULT_CONTENT_TYPE
    text = value.decode("latin-1").strip()
    if not text or len(text) > CONTENT_TYPE_MAX or not text.isascii() or not text.isprintable():
        raise BadRequestError("header 'content-type' is not a valid media type")
    return text


def _utf8(name: str, value: bytes) -> None:
    """Refuse a forwarded value that is not UTF-8 text: the wire contract promises workers text."""
    try:
        value.decode()
    except UnicodeDecodeError:
        raise BadRequestError(f"header {name!r} is not UTF-8 text") from None


def _trace(traceparent: bytes | None, tracestate: list[bytes]) -> protocol.Headers:
    trace: protocol.Headers = []
    if traceparent is not None:
        if TRACEPARENT_PATTERN.fullmatch(traceparent) is None or traceparent.startswith(b"ff"):
            raise BadRequestError("header 'traceparent' is not W3C trace context")
        if traceparent[3:35] == ZERO_TRACE_ID or traceparent[36:52] == ZERO_PARENT_ID:
            # Well-formed but invalid: W3C trace-context §3.2.2.3 says ignore it (and tracestate).
            return trace
        trace.append((protocol.TRACEPARENT, traceparent))
        if tracestate:
            # Several tracestate fields combine into one list (W3C trace-context §3.3.1).
            combined = b",".join(tracestate)
            if len(combined) > TRACESTATE_MAX:
                raise BadRequestError(f"header 'tracestate' exceeds {TRACESTATE_MAX} bytes")
            trace.append((protocol.TRACESTATE, combined))
    return trace
