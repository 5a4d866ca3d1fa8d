"""Settings validation and the librdkafka configs built from them."""

from __future__ import annotations

import logging

import orjson
import pytest
from pydantic import ValidationError

from gateway import correlation
from gateway.settings import GatewaySettings
from kafkarpc.connection import KafkaSettings
from kafkarpc.logs import JsonFormatter


def test_reserved_headers_cannot_be_allow_listed() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(forward_headers=["x-ok", "RPC-Reply-To"])
    with pytest.raises(ValidationError):
        GatewaySettings(forward_headers=["traceparent"])


def test_default_timeout_must_not_exceed_the_maximum() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(default_timeout=60, max_timeout=30)


def test_settings_come_from_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAX_TIMEOUT", "12")
    monkeypatch.setenv("GATEWAY_PUBLISH_TOPICS", '["a","b"]')
    monkeypatch.setenv("GATEWAY_SHED_STATUS", "429")
    settings = GatewaySettings()
    assert settings.max_timeout == 12
    assert settings.publish_topics == ["a", "b"]
    assert settings.shed_status == 429
    assert settings.graceful_shutdown_seconds == 17


def test_producer_is_idempotent_latency_tuned_and_never_creates_topics() -> None:
    config = GatewaySettings(max_timeout=20).producer_config(KafkaSettings(bootstrap_servers="b:9092"), "t")
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["linger.ms"] == 1
    assert config["socket.nagle.disable"] is True
    assert config["allow.auto.create.topics"] is False
    assert config["message.timeout.ms"] == 20_000
    assert config["bootstrap.servers"] == "b:9092"


def test_librdkafka_properties_pass_through_but_message_timeout_stays_bounded() -> None:
    kafka = KafkaSettings(
        properties={"security.protocol": "sasl_ssl", "linger.ms": 5, "message.timeout.ms": 300_000}
    )
    config = GatewaySettings(max_timeout=30).producer_config(kafka, "t")
    assert config["security.protocol"] == "sasl_ssl"
    assert config["linger.ms"] == 5
    assert config["message.timeout.ms"] == 30_000


def test_reply_consumer_reads_without_a_group_protocol() -> None:
    config = GatewaySettings().consumer_config(KafkaSettings(), "tag")
    assert config["enable.auto.commit"] is False
    assert config["fetch.wait.max.ms"] == 100
    assert config["group.id"] == "rpc-gateway-tag"


def test_json_logs_carry_the_gateway_requests_correlation_id() -> None:
    token = correlation.current.set("c" * 32)
    try:
        record = logging.makeLogRecord(
            {"msg": "hello %s", "args": ("x",), "levelname": "INFO", "method": "m"}
        )
        line = orjson.loads(JsonFormatter().format(record))
    finally:
        correlation.current.reset(token)
    assert line["message"] == "hello x"
    assert line["correlation_id"] == "c" * 32
    assert line["method"] == "m"
    assert line["level"] == "INFO"
