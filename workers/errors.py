"""Exceptions of the worker runtime.

WorkerError                 base of everything raised here
├── HandlerError            a handler's deliberate error reply (status + detail)
├── TransientError          a handler asks for a retry (bounded, within the deadline)
└── RegistryError           a handler could not be registered or loaded

Kafka refusing a reply or dead letter is the core's `kafkarpc.errors.DeliveryError`.
"""

from __future__ import annotations

from http import HTTPStatus


class WorkerError(Exception):
    """Base of the worker runtime's exceptions."""


class HandlerError(WorkerError):
    """Raised by a handler to answer with an error status and an RFC 9457 problem body.

    Args:
        status: HTTP status, 400-599.
        detail: Human-readable explanation sent to the caller (never put secrets here).
        title: Short summary; defaults to the status phrase.
        members: RFC 9457 extension members of the problem document (JSON-able), e.g. ``errors``.
    """

    def __init__(self, status: int, detail: str, title: str | None = None, **members: object) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"error status must be 400-599, not {status}")
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.members = members


class TransientError(WorkerError):
    """Raised by a handler when a retry may succeed (a dependency timed out, a lock was busy).

    The runtime retries with backoff up to ``WORKER_RETRY_ATTEMPTS`` attempts and never past the
    request's deadline; if every attempt fails the caller gets 503.
    """


class RegistryError(WorkerError):
    """A handler is registered twice, has a bad method name, or cannot be imported."""
