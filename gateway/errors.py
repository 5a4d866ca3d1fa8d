"""Every way a gateway request can fail, each with its HTTP status and metric outcome.

    GatewayError
    ├── BadRequestError              400  invalid method name, reserved or malformed header
    ├── UnauthenticatedError         401  no credential, or one that does not verify; WWW-Authenticate
    ├── ForbiddenError               403  a valid caller without the scope the policy asks for
    ├── UnknownTopicError            404  publish to a topic outside the allow-list or missing
    ├── UnknownMethodError           404  no live worker announces the method (GATEWAY_UNKNOWN_METHODS=reject)
    ├── MethodNotAllowedError        405  a route's path with a verb it has no route for
    ├── PayloadTooLargeError         413  body over the limit, refused before producing
    ├── HeadersTooLargeError         431  forwarded caller headers over the limit
    ├── ClientDisconnectedError      499  the caller went away (never sent; metrics and logs only)
    ├── WorkerFailedError            502  the worker replied with a 5xx or an unusable reply
    ├── UnavailableError             503  definitely not sent; Retry-After
    │   ├── OverloadedError     429/503  pending requests at the cap (load shedding)
    │   │   └── OverShareError       429  this caller's pending requests at its fair share
    │   ├── ProducerQueueFullError       librdkafka's local queue is full (BufferError)
    │   ├── KafkaUnavailableError        brokers unreachable, or the produce failed definitely
    │   └── NotAcceptingError            starting up or draining for shutdown
    ├── ReplyTimeout                 504  no reply by the deadline (the request may have run)
    └── CallerDeadlineError          504  the caller's own wait left no time (Prefer: wait=0): never sent

`gateway.problems` turns any of them into an RFC 9457 response, in one place; `delivery_error`
says which one a Kafka delivery error is.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

# Delivery errors after which the record may still have been written: the caller
# gets 504 (indeterminate), never a "safe to retry" 503 (RELIABILITY.md §1.2).
INDETERMINATE = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})


class GatewayError(Exception):
    """Base of the tree; ``status``, ``title`` and ``outcome`` describe the answer."""

    status = 500
    title = "Internal Server Error"
    outcome = "error"
    """Label value of ``rpcgw_requests_total{outcome}``."""

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        """Seconds for ``Retry-After``; set on 429/503 answers."""


class BadRequestError(GatewayError):
    status, title, outcome = 400, "Bad Request", "bad_request"


class UnauthenticatedError(GatewayError):
    status, title, outcome = 401, "Unauthorized", "unauthenticated"

    def __init__(self, detail: str, *, reason: str, challenge: str) -> None:
        super().__init__(detail)
        self.reason = reason
        """Why, as a metric label: ``missing``, ``expired``, ``bad_signature``, ``unknown_key``, ..."""
        self.challenge = challenge
        """The ``WWW-Authenticate`` value (RFC 6750 §3 for bearer tokens)."""


class ForbiddenError(GatewayError):
    status, title, outcome = 403, "Forbidden", "forbidden"


class UnknownTopicError(GatewayError):
    status, title, outcome = 404, "Not Found", "unknown_topic"


class UnknownMethodError(GatewayError):
    status, title, outcome = 404, "Not Found", "unknown_method"


class MethodNotAllowedError(GatewayError):
    status, title, outcome = 405, "Method Not Allowed", "bad_request"

    def __init__(self, detail: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.allowed = allowed
        """The verbs the path does have routes for (the ``Allow`` header)."""


class PayloadTooLargeError(GatewayError):
    status, title, outcome = 413, "Content Too Large", "too_large"


class HeadersTooLargeError(GatewayError):
    status, title, outcome = 431, "Request Header Fields Too Large", "bad_request"


class ClientDisconnectedError(GatewayError):
    status, title, outcome = 499, "Client Closed Request", "disconnected"


class WorkerFailedError(GatewayError):
    status, title, outcome = 502, "Bad Gateway", "worker_error"

    def __init__(self, detail: str, *, worker_status: int) -> None:
        super().__init__(detail)
        self.worker_status = worker_status
        """The status the worker replied with."""


class UnavailableError(GatewayError):
    status, title, outcome = 503, "Service Unavailable", "unavailable"


class OverloadedError(UnavailableError):
    outcome = "shed"

    def __init__(self, detail: str, *, status: int, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.status = status
        self.title = "Too Many Requests" if status == 429 else "Service Unavailable"


class OverShareError(OverloadedError):
    """One caller holds its whole fair share of the pending map; others are still served."""

    outcome = "over_share"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, status=429, retry_after=retry_after)


class ProducerQueueFullError(UnavailableError):
    outcome = "shed"


class KafkaUnavailableError(UnavailableError):
    pass


class NotAcceptingError(UnavailableError):
    outcome = "not_ready"


class ReplyTimeout(GatewayError):
    status, title, outcome = 504, "Gateway Timeout", "timeout"


class CallerDeadlineError(GatewayError):
    """The caller chose a deadline that had passed; counted apart from timeouts the system caused."""

    status, title, outcome = 504, "Gateway Timeout", "caller_deadline"


def delivery_error(error: KafkaError) -> GatewayError:
    """The gateway error for a librdkafka delivery error, reported at once or later."""
    code = error.code()
    if code == KafkaError._QUEUE_FULL:
        return ProducerQueueFullError("the Kafka producer queue is full", retry_after=1)
    if code in INDETERMINATE:
        return ReplyTimeout(f"the request may or may not have been written: {error.str()}")
    if code in TOO_LARGE:
        return PayloadTooLargeError(f"the broker refused the record: {error.str()}")
    if code == KafkaError._PURGE_QUEUE:
        # KafkaHealth dropped the queue. It also holds records librdkafka took back from a dropped
        # connection to retry, which the broker may have written: so not "definitely not sent".
        return ReplyTimeout("Kafka stopped answering; the request may or may not have been written")
    return KafkaUnavailableError(f"produce failed: {error.str()}", retry_after=1)
