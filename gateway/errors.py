"""Every way a gateway request can fail, each with its HTTP status and metric outcome.

    GatewayError
    ├── BadRequestError              400  invalid method name, reserved or malformed header
    ├── UnknownTopicError            404  publish to a topic outside the allow-list or missing
    ├── PayloadTooLargeError         413  body over the limit, refused before producing
    ├── HeadersTooLargeError         431  forwarded caller headers over the limit
    ├── ClientDisconnectedError      499  the caller went away (never sent; metrics and logs only)
    ├── WorkerError                  502  the worker replied with a 5xx or an invalid status
    ├── UnavailableError             503  definitely not sent; Retry-After
    │   ├── OverloadedError     429/503  pending requests at the cap (load shedding)
    │   ├── ProducerQueueFullError       librdkafka's local queue is full (BufferError)
    │   ├── KafkaUnavailableError        brokers unreachable, or the produce failed definitely
    │   └── NotAcceptingError            starting up or draining for shutdown
    └── ReplyTimeout                 504  no reply by the deadline (the request may have run)

`gateway.problems` turns any of them into an RFC 9457 response, in one place.
"""

from __future__ import annotations


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


class UnknownTopicError(GatewayError):
    status, title, outcome = 404, "Not Found", "unknown_topic"


class PayloadTooLargeError(GatewayError):
    status, title, outcome = 413, "Content Too Large", "too_large"


class HeadersTooLargeError(GatewayError):
    status, title, outcome = 431, "Request Header Fields Too Large", "bad_request"


class ClientDisconnectedError(GatewayError):
    status, title, outcome = 499, "Client Closed Request", "disconnected"


class WorkerError(GatewayError):
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


class ProducerQueueFullError(UnavailableError):
    outcome = "shed"


class KafkaUnavailableError(UnavailableError):
    pass


class NotAcceptingError(UnavailableError):
    outcome = "not_ready"


class ReplyTimeout(GatewayError):
    status, title, outcome = 504, "Gateway Timeout", "timeout"
