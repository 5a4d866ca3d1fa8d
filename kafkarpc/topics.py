"""Why a topic's metadata says it cannot be used: missing, or refused by the Kafka ACLs.

A broker that enforces ACLs answers a metadata request for a topic the principal may not
describe with TOPIC_AUTHORIZATION_FAILED; saying "does not exist" then sends the operator
looking for a topic that is there. Both sides word it the same way here.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

ACL_REFUSALS = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
"""librdkafka's codes for Kafka refusing this principal (a missing ACL): no retry helps, an
operator must grant it."""


def unusable(topic: str, metadata: Any) -> str | None:
    """What is wrong with ``topic`` given its ``list_topics()`` entry (None if absent); None if nothing."""
    if metadata is not None and metadata.error is None and metadata.partitions:
        return None
    error: KafkaError | None = None if metadata is None else metadata.error
    if error is not None and error.code() in ACL_REFUSALS:
        return (
            f"the Kafka ACLs refuse this client's principal access to topic {topic!r} "
            "(TOPIC_AUTHORIZATION_FAILED): grant it (docs/SECURITY.md)"
        )
    return f"topic {topic!r} does not exist (it is never created)"
