"""Real Apache Kafka for the integration tier.

`kafka` is one KRaft broker started once per test run from Maven jars (or the cluster
``KAFKA_BOOTSTRAP_SERVERS`` names); `kafka_cluster` is three brokers with replication
factor 3 for fault tests, started only when a test asks for it. A broker that cannot
start is a test error with its cause, and (tests/conftest.py) a skip of any integration test
is turned into a failure: integration tests never pass by not running.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack import ExistingKafka, KafkaCluster, kafka_from_environment

from .harness import Topics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


def _announce(config: pytest.Config, text: str) -> None:
    # Printed past output capture, so every run shows which broker it talked to.
    capture = config.pluginmanager.get_plugin("capturemanager")
    assert capture is not None
    with capture.global_and_fixture_disabled():
        print(text, flush=True)


@pytest.fixture(scope="session")
def kafka(pytestconfig: pytest.Config) -> Iterator[KafkaCluster | ExistingKafka]:
    """One real broker for the whole run."""
    cluster = kafka_from_environment()
    cluster.start()
    _announce(pytestconfig, f"\nreal Kafka {cluster.version} at {cluster.bootstrap_servers}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_cluster(pytestconfig: pytest.Config) -> Iterator[KafkaCluster]:
    """Three real brokers (replication factor 3, min.insync.replicas 2) for fault tests."""
    with KafkaCluster(nodes=3) as cluster:
        _announce(pytestconfig, f"\nreal Kafka {cluster.version} cluster at {cluster.bootstrap_servers}")
        yield cluster


@pytest.fixture
def topics(kafka: KafkaCluster | ExistingKafka, unique: str) -> Topics:
    """Requests, replies and spare topics of this test's own."""
    return Topics(kafka, unique)


@pytest.fixture
def unique() -> str:
    """A short random suffix for topic and group names, isolating each test."""
    return uuid.uuid4().hex[:10]
