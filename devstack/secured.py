"""A Kafka cluster that asks who you are and what you may do: SASL_SSL, SCRAM-SHA-512, ACLs.

    with SecuredKafkaCluster() as kafka:
        gateway = kafka.add_user("gateway")
        kafka.grant(acls.gateway(gateway.principal, requests="requests", replies="replies"))
        config = {"bootstrap.servers": kafka.bootstrap_servers, **kafka.client_properties(gateway)}

Clients reach one SASL_SSL listener; KRaft's ``StandardAuthorizer`` refuses whatever no ACL
allows (``allow.everyone.if.no.acl.found=false``). Two super users exist from the start:
``broker`` (the node's own SASL connections) and ``admin`` (devstack's topic and ACL
calls). Their SCRAM credentials are written by ``kafka-storage format --add-scram``, the
only way before any broker runs; application users are added later through the Admin API,
as an operator would. The controller listener uses mutual TLS, not SCRAM, which KRaft does
not offer on controller listeners (KIP-900), so only a holder of the broker's certificate
can speak to it. The tests run it with one node; three should work but are not exercised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

# confluent_kafka.admin re-exports these without __all__, which strict mypy does not count.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from devstack.certificates import Certificates, issue
from devstack.cluster import KafkaCluster
from devstack.credentials import MECHANISM, Credentials, client_properties, kafka_settings
from devstack.errors import LocalKafkaError
from devstack.node import NodeSpec
from kafkarpc.logs import LIBRDKAFKA

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# The broker certificate's subject: the principal of the node on its controller listener.
_NODE_PRINCIPAL = "User:CN=kafka-broker"
# Kafka's minimum for SCRAM is 4096; 8192 as its examples use, still cheap for tests.
_ITERATIONS = 8192
_TIMEOUT = 30.0


class SecuredKafkaCluster(KafkaCluster):
    """`KafkaCluster` with authentication (SCRAM-SHA-512 over TLS) and authorisation (ACLs)."""

    def __init__(self, nodes: int = 1, *, port: int | None = None, startup_timeout: float = 120.0) -> None:
        super().__init__(nodes, port=port, startup_timeout=startup_timeout)
        self.broker = Credentials.generate("broker")
        """The nodes' own user (inter-broker listener), a super user."""
        self.admin = Credentials.generate("admin")
        """devstack's user for topics, users and ACLs, a super user."""
        self._certificates: Certificates | None = None

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust (``ssl.ca.location``); exists once `start` began."""
        if self._certificates is None:
            raise LocalKafkaError("the secured cluster has no certificates before start()")
        return self._certificates.ca

    def client_properties(self, credentials: Credentials) -> dict[str, str]:
        """librdkafka properties for ``credentials`` (add ``bootstrap.servers``)."""
        return client_properties(credentials, self.ca)

    def environment(self, credentials: Credentials) -> dict[str, str]:
        """``KAFKA_*`` variables of a process running as ``credentials``, shaped as the chart's.

        The username and password go to a properties file in the cluster's directory
        (``KAFKA_PROPERTIES_FILE``, removed with the cluster), the rest to ``KAFKA_PROPERTIES``.
        """
        if self._directory is None:
            raise LocalKafkaError("the secured cluster has no clients before start()")
        directory = self._directory / "clients"
        directory.mkdir(exist_ok=True)
        settings = kafka_settings(self.bootstrap_servers, credentials, self.ca, directory)
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_PROPERTIES": json.dumps(settings.properties),
            "KAFKA_PROPERTIES_FILE": str(settings.properties_file),
        }

    def add_user(self, username: str) -> Credentials:
        """Create a SCRAM-SHA-512 user with a random password through the Admin API."""
        credentials = Credentials.generate(username)
        upsert = UserScramCredentialUpsertion(
            username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _ITERATIONS),
            credentials.password.encode(),
        )
        admin = self._admin()  # held until the futures settle: a collected client cancels them
        _wait(
            admin.alter_user_scram_credentials([upsert], request_timeout=_TIMEOUT).values(),
            f"adding {username}",
        )
        return credentials

    def grant(self, bindings: Sequence[AclBinding]) -> None:
        """Create ACL bindings (the ALLOW rules of `devstack.acls`)."""
        admin = self._admin()
        _wait(admin.create_acls(list(bindings), request_timeout=_TIMEOUT).values(), "creating ACLs")

    def prepare(self, directory: Path) -> None:
        """Issue the CA and the node certificate before the nodes' properties name them."""
        self._certificates = issue(directory / "tls")

    def format_arguments(self) -> list[str]:
        """The two super users, written into the metadata log before the first start.

        The passwords are in the format tool's arguments for its second of life: random, local,
        and gone with the cluster.
        """
        return [
            argument
            for user in (self.broker, self.admin)
            for argument in ("--add-scram", f"{MECHANISM}=[name={user.username},password={user.password}]")
        ]

    def admin_properties(self) -> dict[str, str]:
        """devstack's own admin clients connect as the ``admin`` super user."""
        return self.client_properties(self.admin)

    def node_properties(self, spec: NodeSpec, voters: str) -> dict[str, str]:
        """The plaintext node's properties with the listeners secured and the authorizer on."""
        certificates = self._certificates
        assert certificates is not None, "prepare() runs before node_properties()"
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.broker.username}" password="{self.broker.password}";'
        )
        return {
            **super().node_properties(spec, voters),
            "listeners": f"SASL_SSL://127.0.0.1:{spec.port},CONTROLLER://127.0.0.1:{spec.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{spec.port}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certificates.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certificates.ca),
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join((self.broker.principal, self.admin.principal, _NODE_PRINCIPAL)),
        }

    def _admin(self) -> AdminClient:
        return AdminClient(
            {"bootstrap.servers": self.bootstrap_servers, **self.admin_properties()}, logger=LIBRDKAFKA
        )


def _wait(futures: Iterable[Future[Any]], doing: str) -> None:
    for future in futures:
        try:
            future.result(timeout=_TIMEOUT)
        except KafkaException as error:
            raise LocalKafkaError(f"{doing} failed: {error}") from error
