"""SCRAM credentials of one principal, and the librdkafka properties that use them over TLS.

`client_properties` is the one definition of a secured client's configuration: the secured
integration tests connect with it, and the chart test checks that the Helm chart's
``kafka.sasl``/``kafka.tls`` values render exactly the same properties.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kafkarpc.connection import KafkaSettings

MECHANISM = "SCRAM-SHA-512"
"""The SASL mechanism of every secured listener and client."""
SECRET_PROPERTIES = ("sasl.username", "sasl.password")
"""What a pod reads from its properties file (KAFKA_PROPERTIES_FILE), never from KAFKA_PROPERTIES."""


@dataclass(frozen=True)
class Credentials:
    """A SCRAM user; the password never appears in ``repr``, so never in a log line."""

    username: str
    password: str = field(repr=False)

    @property
    def principal(self) -> str:
        """The principal ACLs name: ``User:<username>``."""
        return f"User:{self.username}"

    @classmethod
    def generate(cls, username: str) -> Credentials:
        """A user with a random password (URL-safe characters: nothing to quote anywhere)."""
        return cls(username, secrets.token_urlsafe(24))


def client_properties(credentials: Credentials, ca_location: str | Path) -> dict[str, str]:
    """librdkafka properties of a SCRAM-SHA-512 client over TLS that verifies the broker.

    Verification is librdkafka's default, spelled out so a reader sees it: the broker's
    certificate must chain to ``ca_location`` and name the host the client dialled.
    """
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": MECHANISM,
        "sasl.username": credentials.username,
        "sasl.password": credentials.password,
        "ssl.ca.location": str(ca_location),
        "ssl.endpoint.identification.algorithm": "https",
    }


def kafka_settings(
    bootstrap_servers: str, credentials: Credentials, ca_location: str | Path, directory: Path
) -> KafkaSettings:
    """`KafkaSettings` shaped as the chart shapes a pod's: secrets in a file, the rest inline.

    The username and password go to ``<directory>/<username>.properties`` in the format the
    chart's init container writes (readable by the owner only); the other properties are
    what the chart renders into ``KAFKA_PROPERTIES``.
    """
    properties = client_properties(credentials, ca_location)
    path = directory / f"{credentials.username}.properties"
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={properties.pop(key)}\n" for key in SECRET_PROPERTIES))
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers, properties=dict(properties), properties_file=path
    )
