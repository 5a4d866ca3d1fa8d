"""The Kafka clusters scenarios run on, started on first use and stopped at the end."""

from __future__ import annotations

import contextlib
import logging
import os

from chaos.scenarios.catalogue import ClusterKind
from chaos.toxiproxy import ProxiedKafkaCluster, Toxiproxy
from devstack import KafkaCluster

log = logging.getLogger("chaos")
# Three JVMs and the suite share two cores and the machine's memory with other work.
os.environ.setdefault("LOCAL_KAFKA_HEAP", "512m")


class Clusters:
    """One cluster of each kind at most, kept while scenarios of that kind run."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._kind: ClusterKind | None = None
        self._cluster: KafkaCluster | None = None

    def get(self, kind: ClusterKind) -> KafkaCluster:
        """The cluster of ``kind``; switching kind stops the previous one first."""
        if self._kind == kind and self._cluster is not None:
            return self._cluster
        self.close()
        self._stack = contextlib.ExitStack()
        if kind == "proxied":
            proxy = self._stack.enter_context(Toxiproxy())
            cluster: KafkaCluster = ProxiedKafkaCluster(proxy)
        else:
            cluster = KafkaCluster(nodes=3 if kind == "triple" else 1)
        self._stack.enter_context(cluster)
        log.info("cluster %s up at %s", kind, cluster.bootstrap_servers)
        self._kind, self._cluster = kind, cluster
        return cluster

    def close(self) -> None:
        """Stop whatever runs."""
        self._kind, self._cluster = None, None
        self._stack.close()
