"""A Kafka cluster somebody else runs, named by ``KAFKA_BOOTSTRAP_SERVERS``: used, never started."""

from __future__ import annotations

import os

from confluent_kafka.admin import AdminClient

from devstack.cluster import KafkaCluster
from devstack.errors import LocalKafkaError
from devstack.topics import create_topics
from kafkarpc.logs import LIBRDKAFKA


class ExistingKafka:
    """The `KafkaCluster` interface over a running cluster; `start` checks it answers."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.replication_factor = 1
        self.version = "external"

    def start(self) -> None:
        """Check the cluster answers metadata requests and learn its size.

        Raises:
            LocalKafkaError: it does not answer within 15 seconds.
        """
        try:
            brokers = (
                AdminClient({"bootstrap.servers": self.bootstrap_servers}, logger=LIBRDKAFKA)
                .list_topics(timeout=15)
                .brokers
            )
        except Exception as error:
            raise LocalKafkaError(
                f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers} does not answer ({error}); "
                "start that cluster, or unset the variable to have a local broker started"
            ) from error
        self.replication_factor = min(len(brokers), 3)

    def stop(self) -> None:
        """Nothing to stop: the cluster is not ours."""

    def create_topics(self, topics: dict[str, int], config: dict[str, str] | None = None) -> None:
        """Create topics that do not exist yet."""
        create_topics(self.bootstrap_servers, topics, self.replication_factor, config)


def kafka_from_environment(nodes: int = 1) -> KafkaCluster | ExistingKafka:
    """The cluster ``KAFKA_BOOTSTRAP_SERVERS`` names, else a local one of ``nodes`` nodes (not started)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return ExistingKafka(configured)
    port = os.environ.get("LOCAL_KAFKA_PORT")
    return KafkaCluster(nodes, port=int(port) if port else None)
