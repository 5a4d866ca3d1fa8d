"""One scenario's system: fresh topics, gateway and worker processes, the ledger; torn down after."""

from __future__ import annotations

import collections
import shutil
import signal
import time
import uuid
from typing import Protocol

from chaos import records, service
from chaos.handlers import registry
from chaos.ledger import Ledger
from chaos.load import Load, Outcome
from chaos.report import DEADLINE_SLACK, Figures
from chaos.schedstat import RunQueueWatch
from chaos.service import Service
from devstack.topics import COMPACTED

PENDING = "rpcgw_pending_requests"
EVENT_PARTITIONS = 3
CATALOG_METHODS = "rpcgw_catalog_methods"
# uvicorn (>= 0.29) re-raises the signal it handled once it has shut down, so a gateway that
# drained cleanly on SIGTERM reports -15; workers exit 0.
CLEAN_EXITS = (0, -signal.SIGTERM)


class Kafka(Protocol):
    """What the suite needs of a cluster (devstack's `KafkaCluster` fits)."""

    @property
    def bootstrap_servers(self) -> str: ...
    def create_topics(self, topics: dict[str, int], config: dict[str, str] | None = None) -> None: ...


class Stack:
    """Topics ``<name>-<uuid>``; gateways read distinct reply partitions; workers share one group."""

    def __init__(
        self,
        kafka: Kafka,
        name: str,
        *,
        request_partitions: int = 6,
        reply_partitions: int = 4,
        gateway_bootstrap: str | None = None,
        worker_bootstrap: str | None = None,
        request_config: dict[str, str] | None = None,
    ) -> None:
        """``*_bootstrap`` reach the brokers another way (a proxy); ``request_config`` is the
        requests topic's config (e.g. ``message.timestamp.type=LogAppendTime``)."""
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        self.events = f"events-{unique}"
        """The topic `add_events` creates for ``/publish`` loads."""
        self.kafka = kafka
        self.requests = f"requests-{unique}"
        self.replies = f"replies-{unique}"
        self.dead_letters = f"requests-{unique}.dlt"
        self.catalog = f"catalog-{unique}"
        self.group = f"workers-{unique}"
        self.ledger = Ledger()
        self.gateways: list[Service] = []
        self.workers: list[Service] = []
        self._gateway_bootstrap = gateway_bootstrap or kafka.bootstrap_servers
        self._worker_bootstrap = worker_bootstrap or kafka.bootstrap_servers
        self._reply_partitions = reply_partitions
        self._watch: RunQueueWatch | None = None
        self._watched: dict[str, int] = {}
        """The watched gateways' process ids by URL."""
        kafka.create_topics({self.requests: request_partitions}, request_config)
        kafka.create_topics({self.replies: reply_partitions, self.dead_letters: 1})
        kafka.create_topics({self.catalog: 1}, COMPACTED)

    def add_gateway(self, **env: str) -> Service:
        """Start a gateway (not yet awaited ready) on its own reply partition."""
        settings = {
            "GATEWAY_REQUEST_TOPIC": self.requests,
            "GATEWAY_REPLY_TOPIC": self.replies,
            "GATEWAY_CATALOG_TOPIC": self.catalog,
            "GATEWAY_REPLY_PARTITION": str(len(self.gateways) % self._reply_partitions),
            "GATEWAY_MAX_TIMEOUT": "10",
            "GATEWAY_DEFAULT_TIMEOUT": "5",
            **env,
        }
        started = service.gateway(f"gateway{len(self.gateways) + 1}", self._gateway_bootstrap, settings)
        self.gateways.append(started)
        return started

    def add_worker(self, kafka: dict[str, object] | None = None, **env: str) -> Service:
        """Start a worker in the scenario's group (not yet awaited ready)."""
        settings = {
            "WORKER_REQUEST_TOPIC": self.requests,
            "WORKER_REPLY_TOPICS": self.replies,
            "WORKER_DEAD_LETTER_TOPIC": self.dead_letters,
            "WORKER_CATALOG_TOPIC": self.catalog,
            "WORKER_GROUP_ID": self.group,
            "CHAOS_LEDGER": str(self.ledger.path),
            **env,
        }
        started = service.worker(f"worker{len(self.workers) + 1}", self._worker_bootstrap, settings, kafka)
        self.workers.append(started)
        return started

    def add_events(self, partitions: int = EVENT_PARTITIONS) -> str:
        """Create `events` (for ``/publish`` loads; allow it with ``GATEWAY_PUBLISH_TOPICS``)."""
        self.kafka.create_topics({self.events: partitions})
        return self.events

    def add_production(self, **env: str) -> list[Service]:
        """The production topology of the fault scenarios: two workers and two gateways (with
        ``env``), not yet awaited ready; returns the gateways."""
        self.add_worker()
        self.add_worker()
        return [self.add_gateway(**env), self.add_gateway(**env)]

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Every process answers ``/readyz`` 200."""
        for child in [*self.workers, *self.gateways]:
            child.wait_ready(timeout)

    def wait_catalog(self, timeout: float = 30.0) -> None:
        """Every gateway has read every chaos method from the catalog.

        Ready workers have announced themselves, but a gateway may not have read that yet; until
        it has, it forwards a method without knowing it streams or takes cancel records.
        """
        deadline = time.monotonic() + timeout
        while any(g.metric(CATALOG_METHODS) < len(registry) for g in self.gateways):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateways did not read the catalog within {timeout} s")
            time.sleep(0.1)  # polling another process's gauge; there is no event to await

    @property
    def urls(self) -> list[str]:
        """Base URLs of the gateways."""
        return [g.url for g in self.gateways]

    def settle(self, gateways: list[Service], timeout: float) -> list[float]:
        """Poll each live gateway's pending gauge until 0 or ``timeout``; the last values seen."""
        deadline = time.monotonic() + timeout
        values = [g.metric(PENDING) for g in gateways]
        while any(values) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling another process's gauge; there is no event to await
            values = [g.metric(PENDING) for g in gateways]
        return values

    def watch_gateways(self) -> RunQueueWatch:
        """A run-queue sampler over the current gateway processes, kept for `account`."""
        self._watched = {g.url: g.process.pid for g in self.gateways}
        self._watch = RunQueueWatch(list(self._watched.values()))
        return self._watch

    def account(self, figures: Figures, *loads: Load) -> None:
        """Fold the loads' outcomes and the ledger into ``figures``."""
        figures.harness_loop_lag = max(figures.harness_loop_lag, *(load.loop_lag for load in loads))
        if resent := sum(load.resent for load in loads):
            figures.notes[
                "calls resent: the gateway closed their idle kept-alive connection as they went out"
            ] = resent
        self.account_outcomes(figures, [o for load in loads for o in load.outcomes])

    def account_outcomes(self, figures: Figures, outcomes: list[Outcome]) -> None:
        """Fold caller-side outcomes (of any load) and the ledger into ``figures``."""
        figures.add_outcomes(outcomes)
        self.explain_late(figures, outcomes)
        effects = self.ledger.effects()
        executions = self.ledger.executions()
        figures.lost_acknowledged += sum(
            1 for o in outcomes if 200 <= o.status < 300 and effects[o.nonce] == 0
        )
        figures.duplicate_effects += sum(1 for n in effects.values() if n > 1)
        figures.redelivered += sum(n - 1 for n in executions.values() if n > 1)
        figures.refused_but_executed += sum(
            1 for o in outcomes if o.status in (429, 503) and executions[o.nonce] > 0
        )

    def account_publishes(self, figures: Figures, load: Load, partitions: int = EVENT_PARTITIONS) -> None:
        """Fold a ``/publish`` load into ``figures``: every 202 (acks=all) must be in `events`."""
        topic = self.events
        figures.harness_loop_lag = max(figures.harness_loop_lag, load.loop_lag)
        figures.add_outcomes(load.outcomes)
        self.explain_late(figures, load.outcomes)
        acked = {o.nonce for o in load.outcomes if o.status == 202}
        stored = records.nonces_in(self.kafka.bootstrap_servers, topic, partitions)
        lost = acked - stored
        indeterminate = {o.nonce for o in load.outcomes if o.status == 504}
        figures.lost_acknowledged += len(lost)
        figures.notes["publishes acknowledged / found in the topic"] = f"{len(acked)} / {len(acked & stored)}"
        figures.notes["publishes answered 504 (indeterminate) / found written anyway"] = (
            f"{len(indeterminate)} / {len(indeterminate & stored)}"
        )
        figures.notes["publish statuses"] = dict(collections.Counter(o.status for o in load.outcomes))
        figures.require(not lost, f"{len(lost)} acknowledged publishes lost")

    def explain_late(self, figures: Figures, outcomes: list[Outcome]) -> None:
        """For calls late by more than the slack (net of harness stalls): was the gateway starved?

        For each, how long the event-loop thread of the gateway that answered it sat runnable
        without a CPU between the deadline and the answer: that share of the overrun is the
        machine's, not the gateway's logic (`Figures.worst_past_deadline_own`).
        """
        late = [o for o in outcomes if o.past_deadline_net > DEADLINE_SLACK]
        if not late or self._watch is None:
            return
        waits = [
            self._watch.waited(o.sent_at + o.wait, o.sent_at + o.elapsed, self._watched.get(o.target))
            for o in late
        ]
        figures.add_cpu_waits(late, waits)

    def close(self, figures: Figures, settle_timeout: float = 15.0) -> None:
        """Read the pending gauges, record crashes, stop everything (even after a failure)."""
        try:
            live = [g for g in self.gateways if g.process.poll() is None]
            figures.pending_after = self.settle(live, settle_timeout)
        finally:
            children = [*self.gateways, *self.workers]
            intended = {id(child): child.killed_on_purpose for child in children}
            for child in children:
                child.terminate()
            for child in children:
                code = child.stopped()
                if child.crashes:
                    figures.crashes.append(f"{child.name} exited {child.crashes}")
                elif code not in CLEAN_EXITS and not (intended[id(child)] and code == -signal.SIGKILL):
                    figures.crashes.append(f"{child.name} exited {code} on SIGTERM")
            figures.check_invariants()
            self._clean_up(figures)

    def _clean_up(self, figures: Figures) -> None:
        """Delete the ledger; keep the process logs only when the scenario failed (named in its notes)."""
        shutil.rmtree(self.ledger.path, ignore_errors=True)
        children = [*self.gateways, *self.workers]
        if figures.passed:
            for child in children:
                child.log.unlink(missing_ok=True)
        else:
            figures.notes["process logs"] = [str(child.log) for child in children]
