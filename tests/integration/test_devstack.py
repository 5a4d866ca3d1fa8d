"""The local broker is a real Kafka 4.x that round-trips records and refuses to auto-create topics."""

from __future__ import annotations

import concurrent.futures
import socket
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from devstack import ExistingKafka, KafkaCluster, LocalKafkaError
from devstack.ports import claim
from devstack.process import Child


def test_broker_is_kafka_4_and_round_trips_a_record(kafka: KafkaCluster | ExistingKafka, unique: str) -> None:
    topic = f"roundtrip-{unique}"
    kafka.create_topics({topic: 1})
    kafka.create_topics({topic: 1})  # idempotent

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True})
    producer.produce(topic, b"hello", headers=[("h", b"v")])
    assert producer.flush(10) == 0

    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": unique, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages = consumer.consume(num_messages=1, timeout=10)
    consumer.close()
    assert [(m.value(), m.headers()) for m in messages] == [(b"hello", [("h", b"v")])]
    if isinstance(kafka, KafkaCluster):
        assert kafka.version.startswith("4.")


def test_producing_to_a_missing_topic_does_not_create_it(
    kafka: KafkaCluster | ExistingKafka, unique: str
) -> None:
    missing = f"missing-{unique}"
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "message.timeout.ms": 3000})
    errors: list[KafkaError | None] = []
    producer.produce(missing, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert len(errors) == 1
    assert errors[0] is not None
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=10).topics
    assert missing not in topics


def test_a_taken_port_is_a_clear_error() -> None:
    taken = claim(1)[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with pytest.raises(LocalKafkaError, match=f"port {taken} on 127.0.0.1 is in use"):
            KafkaCluster(port=taken).start()


def test_a_child_is_spawned_only_from_the_main_thread(tmp_path: Path) -> None:
    """The parent-death signal follows the forking thread: a child forked from a pool thread
    would be killed when that thread ends (a restarted broker died so between chaos scenarios)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        spawned = pool.submit(Child.spawn, "true", ["true"], None, tmp_path / "log")
        with pytest.raises(RuntimeError, match="from the main thread"):
            spawned.result(10)
    child = Child.spawn("true", ["true"], None, tmp_path / "log")
    assert child.process.wait(10) == 0
