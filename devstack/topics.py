"""Idempotent topic creation for local clusters (production code never creates topics)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devstack.errors import LocalKafkaError
from kafkarpc.logs import LIBRDKAFKA

COMPACTED = {"cleanup.policy": "compact"}
"""Topic config of the method catalog: the latest record per key (worker process) is kept."""


def create_topics(
    bootstrap_servers: str,
    topics: dict[str, int],
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Create each topic with its partition count; a topic that exists already is fine.

    ``properties`` are added to the admin client's configuration (credentials of a secured cluster).

    Raises:
        LocalKafkaError: the broker refused a topic for another reason.
    """
    # librdkafka's own lines go through logging like the product's, never raw to the terminal.
    admin = AdminClient(
        {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, **(properties or {})},
        logger=LIBRDKAFKA,
    )
    futures = admin.create_topics(
        [
            NewTopic(name, partitions, replication_factor, config=config or {})
            for name, partitions in topics.items()
        ],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise LocalKafkaError(f"creating topic {name!r} failed: {error}") from error
