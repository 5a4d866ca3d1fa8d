"""The wire contract between the gateway and workers, defined once.

Both sides import this module; `docs/PROTOCOL.md` describes the same contract for
workers written in other languages. It imports no Kafka or web code: records are
described as plain ``(value, headers)`` pairs, with headers in confluent-kafka's
``list[tuple[str, bytes]]`` shape.

A request record carries the caller's body as its value and these headers:

    rpc-correlation-id   128-bit random id, 32 lowercase hex digits
    rpc-reply-to         topic the reply must be produced to
    rpc-reply-partition  partition of that topic, ASCII decimal
    rpc-method           method name, see METHOD_PATTERN
    rpc-deadline         absolute deadline, Unix epoch milliseconds, ASCII decimal
    content-type         media type of the value
    traceparent          W3C trace context, passed through when present
    tracestate
    rpc-timing           optional: stage timestamps (`kafkarpc.stamps`), only when the gateway asks
    rpc-route            optional: the HTTP route that matched, e.g. ``GET /orders/{order_id}``
    rpc-path-params      optional: that route's path parameters, a JSON object of strings
    rpc-query            optional: the caller's query string, as sent (percent-encoded, no ``?``)
    rpc-caller           optional: the authenticated caller, a JSON object (`Identity`); only the
                         gateway sets it, and only when authentication is on
    rpc-stream-deadline  optional: for a handler that streams, when its last part must be out,
                         epoch ms (``rpc-deadline`` then bounds only the first part)
    + allow-listed caller headers (never a reserved name)

A reply record carries the handler's body as its value and:

    rpc-correlation-id   copied from the request
    rpc-status           HTTP status code, ASCII decimal; >= 400 means error and
                         the value is an RFC 9457 problem+json document
    content-type
    traceparent, tracestate
    rpc-timing           the request's value plus the worker's stamps, when the request had one
    rpc-response-headers optional: headers for the HTTP caller, a JSON object of strings
    rpc-sequence         on a part of a streamed reply: its number, 0, 1, 2, ...
    rpc-final            on the last part of a streamed reply: ``true``

A cancel record, on the requests topic with the request's key (so in its partition, after it),
tells the worker that nobody waits for the answer any more:

    rpc-correlation-id   the request's
    rpc-cancel           why: `CancelReason`
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson

from .errors import ProtocolError

# Every name the protocol owns starts with this prefix; callers may never set one.
RESERVED_PREFIX = "rpc-"

CORRELATION_ID = "rpc-correlation-id"
REPLY_TO = "rpc-reply-to"
REPLY_PARTITION = "rpc-reply-partition"
METHOD = "rpc-method"
DEADLINE = "rpc-deadline"
STATUS = "rpc-status"
# Optional diagnostics: comma-separated name=epoch-microseconds pairs, appended by each hop.
TIMING = "rpc-timing"
# Set on requests that came by an HTTP route, and on any with a query string.
ROUTE = "rpc-route"
PATH_PARAMS = "rpc-path-params"
QUERY = "rpc-query"
# Set by the gateway when it authenticated the caller: who it is (`Identity`).
CALLER = "rpc-caller"
# Set by workers on replies: headers for the HTTP caller (the gateway filters them).
RESPONSE_HEADERS = "rpc-response-headers"
# Set on requests for a streaming method: when the whole stream must be over (epoch ms).
STREAM_DEADLINE = "rpc-stream-deadline"
# Set by workers on each part of a streamed reply: its number, and on the last one the end marker.
SEQUENCE = "rpc-sequence"
FINAL = "rpc-final"
# Marks a cancel record; the value says why.
CANCEL = "rpc-cancel"
# Set by workers on dead-lettered records.
DEAD_LETTER_REASON = "rpc-dead-letter-reason"
DEAD_LETTER_SOURCE = "rpc-dead-letter-source"
DEAD_LETTER_DETAIL = "rpc-dead-letter-detail"

CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Names that are not rpc-* but still belong to the protocol: set once by the
# sender, never copied from caller headers.
PROTOCOL_HEADERS = frozenset({CONTENT_TYPE, TRACEPARENT, TRACESTATE})
# The W3C trace context, passed through unchanged.
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})

# Headers that must appear at most once on a record; a record with two is
# rejected, because readers disagree on which copy wins (RELIABILITY.md §1.4).
SINGLE_VALUED = frozenset(
    {
        CORRELATION_ID,
        REPLY_TO,
        REPLY_PARTITION,
        METHOD,
        DEADLINE,
        STATUS,
        CONTENT_TYPE,
        TIMING,
        ROUTE,
        PATH_PARAMS,
        QUERY,
        CALLER,
        RESPONSE_HEADERS,
        STREAM_DEADLINE,
        SEQUENCE,
        FINAL,
        CANCEL,
    }
)

METHOD_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CORRELATION_ID_PATTERN = re.compile(r"[0-9a-f]{32}")

PROBLEM_JSON = "application/problem+json"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

Headers = list[tuple[str, bytes]]


def is_reserved(name: str) -> bool:
    """Whether a header name belongs to the protocol (case-insensitive)."""
    lowered = name.lower()
    return lowered.startswith(RESERVED_PREFIX) or lowered in PROTOCOL_HEADERS


def valid_method(method: str) -> bool:
    """Whether ``method`` is a legal method name."""
    return METHOD_PATTERN.fullmatch(method) is not None


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller of a request, as the gateway vouches for it (``rpc-caller``).

    Encoded as ``{"sub": "...", "scopes": [...], "claims": {...}}``; ``claims`` holds only the
    token claims the gateway is configured to pass on (``GATEWAY_AUTH_FORWARD_CLAIMS``).
    """

    subject: str
    """Who is calling: the token's ``sub``, or the API key's subject."""
    scopes: tuple[str, ...] = ()
    """The scopes or roles the caller holds."""
    claims: dict[str, object] = field(default_factory=dict)
    """Further claims passed on, by name (JSON values)."""

    def encode(self) -> bytes:
        """The ``rpc-caller`` header value."""
        return orjson.dumps({"sub": self.subject, "scopes": list(self.scopes), "claims": self.claims})

    @classmethod
    def decode(cls, text: str) -> Identity:
        """Parse an ``rpc-caller`` header value.

        Raises:
            ProtocolError: not a JSON object with a string ``sub``, a list of string ``scopes``
                and an object ``claims``.
        """
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"header {CALLER} is not JSON") from None
        if not isinstance(document, dict):
            raise ProtocolError(f"header {CALLER} is not a JSON object")
        subject, scopes, claims = document.get("sub"), document.get("scopes", []), document.get("claims", {})
        if not isinstance(subject, str) or not subject:
            raise ProtocolError(f"header {CALLER} has no subject")
        if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
            raise ProtocolError(f"header {CALLER} scopes is not a list of strings")
        if not isinstance(claims, dict):
            raise ProtocolError(f"header {CALLER} claims is not an object")
        return cls(subject, tuple(scopes), claims)


@dataclass(frozen=True, slots=True)
class Request:
    """A request as it travels on the requests topic."""

    correlation_id: str
    """32 lowercase hex digits, unique per request."""
    reply_to: str
    """Topic the reply goes to."""
    reply_partition: int | None
    """Partition of ``reply_to`` the gateway reads; None lets the producer choose."""
    method: str
    """Which handler serves the request."""
    deadline_ms: int
    """Absolute deadline in Unix epoch milliseconds; work after it is wasted."""
    body: bytes
    """The caller's body, untouched."""
    content_type: str = DEFAULT_CONTENT_TYPE
    """Media type of ``body``."""
    trace: Headers = field(default_factory=list)
    """``traceparent``/``tracestate`` headers to pass through unchanged."""
    extra: Headers = field(default_factory=list)
    """Allow-listed caller headers, never reserved names."""
    timing: str = ""
    """``rpc-timing`` stamps so far; empty when the gateway does not ask for them."""
    route: str = ""
    """The HTTP route that matched (``GET /orders/{order_id}``); empty for ``/rpc/{method}``."""
    path_params: dict[str, str] = field(default_factory=dict)
    """The route's path parameters, as strings."""
    query: str = ""
    """The caller's query string, percent-encoded, without ``?``."""
    caller: Identity | None = None
    """Who called, when the gateway authenticates callers; None otherwise."""
    stream_deadline_ms: int | None = None
    """For a streaming handler: when its last part must be out; None: ``deadline_ms`` bounds it all."""

    def query_params(self) -> list[tuple[str, str]]:
        """The query string decoded into (name, value) pairs, in order, blank values kept."""
        return parse_qsl(self.query, keep_blank_values=True)

    def headers(self) -> Headers:
        """The record headers for this request, reserved ones set exactly once."""
        headers: Headers = [
            (CORRELATION_ID, self.correlation_id.encode()),
            (REPLY_TO, self.reply_to.encode()),
            (METHOD, self.method.encode()),
            (DEADLINE, str(self.deadline_ms).encode()),
            (CONTENT_TYPE, self.content_type.encode()),
        ]
        if self.reply_partition is not None:
            headers.append((REPLY_PARTITION, str(self.reply_partition).encode()))
        if self.timing:
            headers.append((TIMING, self.timing.encode()))
        if self.route:
            headers.append((ROUTE, self.route.encode()))
        if self.path_params:
            headers.append((PATH_PARAMS, orjson.dumps(self.path_params)))
        if self.query:
            headers.append((QUERY, self.query.encode()))
        if self.caller is not None:
            headers.append((CALLER, self.caller.encode()))
        if self.stream_deadline_ms is not None:
            headers.append((STREAM_DEADLINE, str(self.stream_deadline_ms).encode()))
        headers.extend(self.trace)
        headers.extend(self.extra)
        return headers

    @classmethod
    def from_record(cls, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None) -> Request:
        """Decode a consumed request record.

        Raises:
            ProtocolError: a required header is missing, duplicated or malformed.
        """
        single, trace, extra = _read(headers or ())
        correlation_id = _required(single, CORRELATION_ID)
        if CORRELATION_ID_PATTERN.fullmatch(correlation_id) is None:
            raise ProtocolError(f"{CORRELATION_ID} is not 32 lowercase hex digits")
        method = _required(single, METHOD)
        if not valid_method(method):
            raise ProtocolError(f"{METHOD} {method!r} is not a valid method name")
        partition = single.get(REPLY_PARTITION)
        caller = single.get(CALLER)
        stream_deadline = single.get(STREAM_DEADLINE)
        stream_deadline_ms = None if stream_deadline is None else _integer(STREAM_DEADLINE, stream_deadline)
        return cls(
            correlation_id=correlation_id,
            reply_to=_required(single, REPLY_TO),
            reply_partition=None if partition is None else _integer(REPLY_PARTITION, partition),
            method=method,
            deadline_ms=_integer(DEADLINE, _required(single, DEADLINE)),
            body=value or b"",
            content_type=single.get(CONTENT_TYPE) or DEFAULT_CONTENT_TYPE,
            trace=trace,
            extra=extra,
            timing=single.get(TIMING, ""),
            route=single.get(ROUTE, ""),
            path_params=_strings(PATH_PARAMS, single.get(PATH_PARAMS)),
            query=single.get(QUERY, ""),
            caller=None if caller is None else Identity.decode(caller),
            stream_deadline_ms=stream_deadline_ms,
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply as it travels on the reply topic."""

    correlation_id: str
    """Copied from the request it answers."""
    status: int
    """HTTP status; >= 400 is an error and ``body`` is problem+json."""
    body: bytes
    """The handler's answer."""
    content_type: str = DEFAULT_CONTENT_TYPE
    """Media type of ``body``."""
    trace: Headers = field(default_factory=list)
    """``traceparent``/``tracestate`` copied from the request."""
    timing: str = ""
    """The request's ``rpc-timing`` plus the worker's stamps; empty when not asked for."""
    response_headers: dict[str, str] = field(default_factory=dict)
    """Headers for the HTTP caller (``location``, ``etag``, ...); the gateway passes allowed ones on."""
    sequence: int | None = None
    """The part's number in a streamed reply (0, 1, ...); None for a whole reply."""
    final: bool = True
    """Whether nothing follows: always for a whole reply, on the last part of a stream."""

    @property
    def is_error(self) -> bool:
        """Whether the worker reports a failure."""
        return self.status >= 400

    @property
    def streaming(self) -> bool:
        """Whether this is the first or a middle part of a streamed reply (more parts follow)."""
        return self.sequence is not None and not self.final

    def headers(self) -> Headers:
        """The record headers for this reply."""
        headers = [
            (CORRELATION_ID, self.correlation_id.encode()),
            (STATUS, str(self.status).encode()),
            (CONTENT_TYPE, self.content_type.encode()),
            *self.trace,
        ]
        if self.timing:
            headers.append((TIMING, self.timing.encode()))
        if self.response_headers:
            headers.append((RESPONSE_HEADERS, orjson.dumps(self.response_headers)))
        if self.sequence is not None:
            headers.append((SEQUENCE, str(self.sequence).encode()))
            if self.final:
                headers.append((FINAL, b"true"))
        return headers

    @classmethod
    def from_record(cls, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None) -> Reply:
        """Decode a consumed reply record.

        Raises:
            ProtocolError: a required header is missing, duplicated or malformed.
        """
        single, trace, _ = _read(headers or ())
        status = _integer(STATUS, _required(single, STATUS))
        if not 100 <= status <= 599:
            raise ProtocolError(f"{STATUS} {status} is not an HTTP status code")
        sequence = single.get(SEQUENCE)
        final = single.get(FINAL)
        if final is not None and final != "true":
            raise ProtocolError(f"{FINAL} must be 'true' when present")
        if final is not None and sequence is None:
            raise ProtocolError(f"{FINAL} without {SEQUENCE}")
        return cls(
            correlation_id=_required(single, CORRELATION_ID),
            status=status,
            body=value or b"",
            content_type=single.get(CONTENT_TYPE) or DEFAULT_CONTENT_TYPE,
            trace=trace,
            timing=single.get(TIMING, ""),
            response_headers=_strings(RESPONSE_HEADERS, single.get(RESPONSE_HEADERS)),
            sequence=None if sequence is None else _integer(SEQUENCE, sequence),
            final=sequence is None or final is not None,
        )

    @classmethod
    def problem(
        cls,
        correlation_id: str,
        status: int,
        title: str,
        detail: str,
        trace: Headers | None = None,
        **members: object,
    ) -> Reply:
        """An error reply whose body is an RFC 9457 problem document; ``members`` are extensions."""
        return cls(
            correlation_id=correlation_id,
            status=status,
            body=problem_body(status, title, detail, correlation_id=correlation_id, **members),
            content_type=PROBLEM_JSON,
            trace=trace or [],
        )


class CancelReason:
    """Why a cancel record was sent (the ``rpc-cancel`` value); workers treat any value alike."""

    DISCONNECTED = "disconnected"
    """The HTTP caller went away before the answer was complete."""
    DEADLINE = "deadline"
    """The caller was answered 504 (or the stream reached its length limit)."""
    STREAM_IDLE = "stream-idle"
    """No part of a streamed reply arrived within the idle timeout."""
    STREAM_OVERFLOW = "stream-overflow"
    """The caller read a streamed reply too slowly and was cut off."""
    STREAM_BROKEN = "stream-broken"
    """A part went missing or came twice; the caller got an error."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """A cancel record: nobody waits for the answer to ``correlation_id`` any more."""

    correlation_id: str
    reason: str

    def headers(self) -> Headers:
        """The record headers (the value is empty, the key is the correlation id)."""
        return [(CORRELATION_ID, self.correlation_id.encode()), (CANCEL, self.reason.encode())]

    @classmethod
    def from_record(cls, headers: Sequence[tuple[str, bytes | None]] | None) -> Cancel | None:
        """The cancel a record carries; None if it is not a cancel record (a request).

        Raises:
            ProtocolError: a cancel record with a missing or malformed correlation id.
        """
        if not is_cancel(headers or ()):
            return None
        single, _, _ = _read(headers or ())
        correlation_id = _required(single, CORRELATION_ID)
        if CORRELATION_ID_PATTERN.fullmatch(correlation_id) is None:
            raise ProtocolError(f"{CORRELATION_ID} is not 32 lowercase hex digits")
        return cls(correlation_id, single.get(CANCEL, ""))


def problem_body(status: int, title: str, detail: str, **members: object) -> bytes:
    """An RFC 9457 problem+json document; ``members`` are extension members."""
    return orjson.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **members}
    )


def correlation_id_of(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The first correlation id among ``headers``, for logs about broken records."""
    for name, value in headers or ():
        if name.lower() == CORRELATION_ID and value is not None:
            return value.decode("utf-8", "replace")
    return None


def is_cancel(headers: Iterable[tuple[str, bytes | None]]) -> bool:
    """Whether a record is a cancel record: it has an ``rpc-cancel`` header (any case)."""
    # Asked of every record the worker takes: a plain loop, not any() over a generator.
    for name, _ in headers:  # noqa: SIM110 (measured: 0.58 µs against 0.96 for any())
        if name.lower() == CANCEL:
            return True
    return False


def duplicated(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The first single-valued header that appears more than once (names compared case-insensitively)."""
    seen: set[str] = set()
    for name, _ in headers:
        lowered = name.lower()
        if lowered in SINGLE_VALUED:
            if lowered in seen:
                return lowered
            seen.add(lowered)
    return None


def _read(headers: Iterable[tuple[str, bytes | None]]) -> tuple[dict[str, str], Headers, Headers]:
    """A record's headers in one pass (each name lower-cased once, on every record's path): the
    reserved single-valued ones by lower-case name, duplicates and bad UTF-8 rejected; the
    trace headers; and the caller's, never reserved."""
    single: dict[str, str] = {}
    trace: Headers = []
    extra: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in SINGLE_VALUED:
            if lowered in single:
                raise ProtocolError(f"header {lowered} appears more than once")
            if value is None:
                raise ProtocolError(f"header {lowered} has no value")
            try:
                single[lowered] = value.decode()
            except UnicodeDecodeError:
                raise ProtocolError(f"header {lowered} is not UTF-8") from None
        elif lowered in TRACE_HEADERS:
            if value is not None:
                trace.append((lowered, value))
        elif value is not None and not lowered.startswith(RESERVED_PREFIX):
            extra.append((name, value))
    return single, trace, extra


def _strings(name: str, text: str | None) -> dict[str, str]:
    """A header holding a JSON object of strings; ``{}`` when absent."""
    if text is None:
        return {}
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(f"header {name} is not JSON") from None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ProtocolError(f"header {name} is not a JSON object of strings")
    return document


def _required(single: dict[str, str], name: str) -> str:
    value = single.get(name)
    if not value:
        raise ProtocolError(f"header {name} is missing")
    return value


def _integer(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ProtocolError(f"header {name} is not a non-negative decimal integer")
    return int(text)
