"""Dead-letter records: the original request plus why and where it came from.

A dead letter keeps the request's key, value and headers byte for byte (except any
``rpc-dead-letter-*`` headers it already carried, which a sender could forge) and adds:

    rpc-dead-letter-reason   one of `Reason`
    rpc-dead-letter-source   <topic>/<partition>/<offset> of the request
    rpc-dead-letter-detail   human-readable cause (never a secret; a protocol message)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kafkarpc.clients import Message, RecordHeaders
from kafkarpc.protocol import DEAD_LETTER_DETAIL, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE, RESERVED_PREFIX

# Every header this module owns starts with this; copies from the request are dropped.
DEAD_LETTER_PREFIX = f"{RESERVED_PREFIX}dead-letter-"


class Reason(StrEnum):
    """Why a record was dead-lettered (also the ``reason`` metric label)."""

    INVALID_REQUEST = "invalid-request"
    """Headers missing, malformed or not UTF-8."""
    DUPLICATE_HEADER = "duplicate-header"
    """A single-valued reserved header appears more than once (possible spoofing)."""
    UNKNOWN_METHOD = "unknown-method"
    """No handler is registered for the method."""
    REPLY_TOPIC_NOT_ALLOWED = "reply-topic-not-allowed"
    """rpc-reply-to names a topic outside ``WORKER_REPLY_TOPICS``."""
    REPLY_UNDELIVERABLE = "reply-undeliverable"
    """The request was handled but Kafka refused the reply (missing topic, too large, ...)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record to produce to the dead-letter topic."""

    key: bytes | None
    """The request's key."""
    value: bytes | None
    """The request's value, untouched."""
    headers: RecordHeaders
    """The request's headers plus the dead-letter headers."""
    reason: Reason
    """Why, for metrics and logs."""


def dead_letter(
    key: bytes | None,
    value: bytes | None,
    headers: RecordHeaders | None,
    *,
    reason: Reason,
    source: str,
    detail: str,
) -> DeadLetter:
    """The dead letter for a request record.

    Args:
        key: Record key.
        value: Record value.
        headers: Record headers as consumed (duplicates kept).
        reason: Why it is dead-lettered.
        source: ``topic/partition/offset`` of the request.
        detail: Human-readable cause.
    """
    kept: RecordHeaders = [
        (name, data) for name, data in headers or () if not name.lower().startswith(DEAD_LETTER_PREFIX)
    ]
    kept += [
        (DEAD_LETTER_REASON, reason.value.encode()),
        (DEAD_LETTER_SOURCE, source.encode()),
        (DEAD_LETTER_DETAIL, detail.encode("utf-8", "replace")),
    ]
    return DeadLetter(key, value, kept, reason)


def dead_letter_for(message: Message, reason: Reason, detail: str) -> DeadLetter:
    """The dead letter for a consumed request record."""
    source = f"{message.topic()}/{message.partition()}/{message.offset()}"
    return dead_letter(
        message.key(), message.value(), message.headers(), reason=reason, source=source, detail=detail
    )
