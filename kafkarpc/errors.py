"""Exceptions of the shared core.

KafkaRpcError          base of everything raised here
├── ProtocolError      a record does not follow the wire contract (also a ValueError)
└── DeliveryError      Kafka did not take a record: refused at once or in its delivery report
"""

from __future__ import annotations

from typing import Any


class KafkaRpcError(Exception):
    """Base of the core's exceptions."""


class ProtocolError(KafkaRpcError, ValueError):
    """A record does not follow the wire contract; the message says how."""


class DeliveryError(KafkaRpcError):
    """Kafka did not take a record for ``topic``; ``error`` is librdkafka's ``KafkaError``."""

    def __init__(self, topic: str, error: Any) -> None:
        super().__init__(f"delivery to {topic} failed: {error}")
        self.topic = topic
        self.error = error
        """The ``confluent_kafka.KafkaError`` (``_QUEUE_FULL`` when the local queue was full)."""
