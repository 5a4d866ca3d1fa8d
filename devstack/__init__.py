"""Local development stack: a real Apache Kafka from Maven jars, and ``make run``."""

from devstack.cluster import KafkaCluster
from devstack.errors import LocalKafkaError
from devstack.existing import ExistingKafka, kafka_from_environment

__all__ = ["ExistingKafka", "KafkaCluster", "LocalKafkaError", "kafka_from_environment"]
