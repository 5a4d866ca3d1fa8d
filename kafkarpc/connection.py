"""How gateway and workers reach Kafka: one settings object, read from ``KAFKA_*``.

Any librdkafka property can be set, so SASL, TLS and tuning need no code change:

    KAFKA_BOOTSTRAP_SERVERS=broker-0:9092,broker-1:9092
    KAFKA_PROPERTIES='{"security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-512"}'
    KAFKA_PROPERTIES_FILE=/etc/kafka/client.properties   # key=value lines; mount secrets here

Later sources win: built-in defaults, then the file, then ``KAFKA_PROPERTIES``. The
resulting dict holds secrets, so it is never logged; `redacted` is the loggable view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every producer of the project: acknowledged by all in-sync replicas, never duplicated by a
# retry (librdkafka's default is not idempotent, RELIABILITY.md 1.1), latency-tuned
# (PERFORMANCE.md 3), and never creating a topic (the producer default would).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 1,
    "socket.nagle.disable": True,
    "allow.auto.create.topics": False,
}
# Substrings of property names whose values are secrets.
_SECRET_MARKERS = ("password", "secret", "key", "jaas", "token", "credential")


class KafkaSettings(BaseSettings):
    """Connection to the Kafka cluster, shared by gateway and workers."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list."""
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Extra librdkafka properties as a JSON object; wins over the file."""
    properties_file: Path | None = None
    """A Java-style properties file (``key=value`` lines, ``#`` comments)."""
    eager_send: bool = True
    """While records are sparse (under about 0.3 per ``linger.ms``) each leaves at once; when
    they crowd they share batches (`AsyncProducer`). False: ``linger.ms`` delays every record."""

    def client_config(self, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """The librdkafka configuration: ``defaults``, then the file, then ``properties``.

        ``bootstrap.servers`` always comes from `bootstrap_servers` unless a
        property overrides it explicitly.
        """
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **(defaults or {})}
        if self.properties_file is not None:
            config.update(read_properties(self.properties_file))
        config.update(self.properties)
        return config


def read_properties(path: Path) -> dict[str, str]:
    """Parse ``key=value`` lines; blank lines and ``#``/``!`` comments are skipped."""
    properties: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{number}: expected key=value")
        properties[key.strip()] = value.strip()
    return properties


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a client config that is safe to log: secret values masked."""
    return {
        key: "***" if any(marker in key.lower() for marker in _SECRET_MARKERS) else value
        for key, value in config.items()
    }
