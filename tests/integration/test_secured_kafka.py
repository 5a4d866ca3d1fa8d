"""The gateway and the workers against a Kafka that asks who they are and what they may do.

One broker for the module: SASL_SSL only (SCRAM-SHA-512 over TLS the clients verify),
KRaft's StandardAuthorizer, and no access where no ACL allows it. The real gateway and the
real worker runtime run as distinct principals holding only the `devstack.acls` grants,
configured the way the chart configures a pod (`devstack.credentials`: secrets in a
properties file, the rest inline); tests/chart/test_kafka_security.py checks the chart
renders the same configuration.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from devstack import acls
from devstack.credentials import Credentials, client_properties, kafka_settings
from devstack.secured import SecuredKafkaCluster
from gateway.app import create_app
from kafkarpc import protocol
from kafkarpc.connection import PRODUCER_DEFAULTS, KafkaSettings
from kafkarpc.logs import JsonFormatter

from .harness import Topics, serving, working

# Long enough for librdkafka to connect, authenticate and be refused a few times over.
REFUSAL_SECONDS = 10.0
# Kafka refusing a principal as librdkafka words it: TOPIC_AUTHORIZATION_FAILED, "Group authorization failed"
REFUSED = re.compile(r"authori[sz]ation.failed", re.IGNORECASE)


@dataclass(frozen=True)
class Principal:
    """A user of the secured cluster and the settings its process runs with."""

    credentials: Credentials
    kafka: KafkaSettings


@dataclass(frozen=True)
class Principals:
    gateway: Principal
    worker: Principal


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredKafkaCluster]:
    """The secured broker; one that cannot start fails the tests (never skips them)."""
    cluster = SecuredKafkaCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def topics(secured: SecuredKafkaCluster) -> Topics:
    """The module's topics (created as the admin super user); ``events`` is granted to nobody."""
    return Topics(secured, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def principals(
    secured: SecuredKafkaCluster, topics: Topics, tmp_path_factory: pytest.TempPathFactory
) -> Principals:
    """The gateway's and the worker's users, each granted exactly its table row in `devstack.acls`."""
    directory = tmp_path_factory.mktemp("kafka-client")
    gateway, worker = secured.add_user("gateway"), secured.add_user("worker")
    secured.grant(
        acls.gateway(
            gateway.principal, requests=topics.requests, replies=topics.replies, catalog=topics.catalog
        )
        + acls.worker(
            worker.principal,
            group=f"workers-{topics.unique}",
            requests=topics.requests,
            replies=[topics.replies],
            dead_letter=f"{topics.requests}.dlt",
            catalog=topics.catalog,
        )
    )
    return Principals(
        *(
            Principal(user, kafka_settings(secured.bootstrap_servers, user, secured.ca, directory))
            for user in (gateway, worker)
        )
    )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


async def test_rpc_over_sasl_ssl_with_least_privilege(
    secured: SecuredKafkaCluster, topics: Topics, principals: Principals, logs: pytest.LogCaptureFixture
) -> None:
    gateway = principals.gateway
    # What the processes run with is the one secured client configuration, secrets from the file.
    assert gateway.kafka.client_config() == {
        "bootstrap.servers": secured.bootstrap_servers,
        **client_properties(gateway.credentials, secured.ca),
    }
    assert "sasl.password" not in gateway.kafka.properties
    denied_before = len(_denials(secured))

    app = create_app(topics.settings(publish_topics=[]), gateway.kafka)
    async with (
        working(topics, kafka=principals.worker.kafka),
        serving(app) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        response = await http.post("/rpc/echo", content=b'{"secured": true}', timeout=30)
        assert response.status_code == 200, response.text
        assert response.content == b'{"secured": true}'
        # The catalog was read too: the worker's route answers through the gateway.
        assert (await http.get("/orders", timeout=30)).status_code == 200

    # The grants were enough: nothing was refused to either principal along the way.
    assert _denials(secured)[denied_before:] == []
    assert not [r for r in logs.records if REFUSED.search(_formatted(r))]
    _assert_no_secrets(logs, principals)


async def test_worker_refused_a_topic_without_an_acl_logs_why_and_dead_letters(
    secured: SecuredKafkaCluster, topics: Topics, principals: Principals, logs: pytest.LogCaptureFixture
) -> None:
    # The worker's allow-list names a reply topic its principal was never granted.
    foreign = topics.events
    request = protocol.Request(
        correlation_id=uuid.uuid4().hex,
        reply_to=foreign,
        reply_partition=0,
        method="echo",
        deadline_ms=int(time.time() * 1000) + 30_000,
        body=b"{}",
    )
    reply_topics = frozenset({topics.replies, foreign})
    async with working(topics, kafka=principals.worker.kafka, reply_topics=reply_topics):
        _produce_as(secured.admin, secured, topics.requests, request)
        letter = await asyncio.to_thread(
            _first_record, secured, f"{topics.requests}.dlt", request.correlation_id
        )

    assert dict(letter.headers() or [])[protocol.DEAD_LETTER_REASON] == b"reply-undeliverable"
    refusals = [r for r in logs.records if "TOPIC_AUTHORIZATION_FAILED" in _formatted(r)]
    assert refusals, "the refusal was not logged"
    refusal = refusals[0]
    assert refusal.levelno == logging.ERROR
    assert getattr(refusal, "topic", None) == foreign
    assert "ACL" in getattr(refusal, "cause", "")
    assert any(
        "User:worker is Denied operation = DESCRIBE" in line and foreign in line for line in _denials(secured)
    )
    _assert_no_secrets(logs, principals)


def test_the_gateway_may_not_answer_callers_nor_announce_routes(
    secured: SecuredKafkaCluster, topics: Topics, principals: Principals
) -> None:
    # Whoever writes a reply topic can answer any pending caller; the gateway's principal cannot.
    config = principals.gateway.kafka.client_config(PRODUCER_DEFAULTS)
    for topic in (topics.replies, topics.catalog, f"{topics.requests}.dlt"):
        error = _produce(config, topic)
        assert error is not None, topic
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    # Nor may the worker's principal read the replies other workers send.
    consumer = Consumer(
        {**principals.worker.kafka.client_config(), "group.id": f"workers-{topics.unique}", "log_level": 0}
    )
    try:
        consumer.assign([TopicPartition(topics.replies, 0, 0)])
        message = consumer.poll(REFUSAL_SECONDS)
        assert message is not None
        error = message.error()
        assert error is not None
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()


async def test_a_wrong_password_fails_fast_with_a_clear_logged_cause(
    secured: SecuredKafkaCluster, topics: Topics, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    wrong = Credentials.generate("worker")  # a real user, a password that is not its own
    settings = kafka_settings(secured.bootstrap_servers, wrong, secured.ca, tmp_path)
    failed = _watch(logs, _is_authentication_failure)
    started = time.monotonic()
    # No catalog: nothing for a refused producer to flush at shutdown, so the test ends at once.
    async with working(topics, kafka=settings, ready=False, catalog_topic="") as worker:
        await asyncio.to_thread(failed.wait, REFUSAL_SECONDS)
        elapsed = time.monotonic() - started
        assert not worker.ready.is_set()
    failures = _authentication_failures(logs)
    assert failures, "no authentication failure was logged"
    assert elapsed < 5.0
    assert any(r.levelno >= logging.ERROR for r in failures)
    assert "SCRAM-SHA-512" in _formatted(failures[0])
    assert wrong.password not in "".join(_formatted(r) for r in logs.records)


# Helpers -------------------------------------------------------------------------------------


def _formatted(record: logging.LogRecord) -> str:
    """The record as the JSON line production writes, extras (e.g. configs) included."""
    return JsonFormatter().format(record)


def _assert_no_secrets(logs: pytest.LogCaptureFixture, principals: Principals) -> None:
    text = "".join(_formatted(record) for record in logs.records)
    for principal in (principals.gateway, principals.worker):
        assert principal.credentials.password not in text


def _watch(logs: pytest.LogCaptureFixture, match: Callable[[logging.LogRecord], bool]) -> threading.Event:
    """An event set by the first captured record that ``match``es, from any thread (librdkafka's too)."""
    seen = threading.Event()

    def watch(record: logging.LogRecord) -> bool:
        if match(record):
            seen.set()
        return True

    logs.handler.addFilter(watch)
    return seen


def _is_authentication_failure(record: logging.LogRecord) -> bool:
    return "Authentication failed" in _formatted(record)


def _authentication_failures(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in logs.records if _is_authentication_failure(record)]


def _denials(secured: SecuredKafkaCluster) -> list[str]:
    """The authorizer's "Denied" lines in the broker log, oldest first."""
    text = secured.nodes[0].log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if " is Denied operation " in line]


def _produce(config: dict[str, object], topic: str) -> KafkaError | None:
    """Produce one record and wait for its delivery report; the report's error, if any."""
    reports: list[KafkaError | None] = []
    producer = Producer({**config, "log_level": 0})
    producer.produce(topic, b"forged", on_delivery=lambda error, _: reports.append(error))
    producer.flush(30)
    assert len(reports) == 1, f"no delivery report for {topic}"
    return reports[0]


def _produce_as(
    user: Credentials, secured: SecuredKafkaCluster, topic: str, request: protocol.Request
) -> None:
    """Send ``request`` as the gateway would, keyed by its correlation id."""
    producer = Producer({"bootstrap.servers": secured.bootstrap_servers, **secured.client_properties(user)})
    headers: list[tuple[str, str | bytes | None]] = list(request.headers())
    producer.produce(topic, request.body, request.correlation_id.encode(), headers=headers)
    assert producer.flush(30) == 0


def _first_record(secured: SecuredKafkaCluster, topic: str, key: str) -> Any:
    """The first record keyed ``key`` on partition 0 of ``topic``, read as the admin."""
    consumer = Consumer(
        {
            "bootstrap.servers": secured.bootstrap_servers,
            **secured.admin_properties(),
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.key() == key.encode():
                return message
        raise AssertionError(f"no record keyed {key} on {topic}")
    finally:
        consumer.close()
