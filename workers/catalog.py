"""`CatalogPublisher`: this worker's entry in the method catalog (`kafkarpc.catalog`).

Published when the worker starts and then every heartbeat, so gateways learn of its methods
within a fetch and forget them once the heartbeats stop; withdrawn (a tombstone) when it stops.
A catalog Kafka refuses is logged and tried again at the next heartbeat: the worker serves
requests either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kafkarpc.catalog import Entry

if TYPE_CHECKING:
    from kafkarpc.producer import AsyncProducer
    from workers.registry import HandlerRegistry

log = logging.getLogger(__name__)

WITHDRAW_TIMEOUT = 5.0
"""Longest the tombstone may take to be acknowledged at shutdown."""
ANNOUNCE_WAIT = 5.0
"""Longest readiness waits for the first entry to be acknowledged (a missing topic takes ~30 s)."""


class CatalogPublisher:
    """Publishes one worker process's catalog entry until stopped; use on the event loop."""

    def __init__(
        self,
        producer: AsyncProducer,
        topic: str,
        registry: HandlerRegistry,
        *,
        group: str,
        instance: str,
        heartbeat: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._methods = tuple(registration.describe() for registration in registry)
        self._group = group
        self._instance = instance
        self._heartbeat = heartbeat
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._announced: Callable[[], object] | None = None

    def start(self, announced: Callable[[], object] | None = None) -> None:
        """Publish now and then every heartbeat; ``announced()`` once the first publish was answered.

        Answered either way: a worker whose catalog Kafka refuses still serves (and logs why).
        """
        self._announced = announced
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="catalog-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeats and withdraw the entry (bounded); call before the producer stops."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        key = Entry(self._group, self._instance, 0).key
        try:
            async with asyncio.timeout(WITHDRAW_TIMEOUT):
                await self._producer.send(self._topic, None, key, [])
            log.info("catalog entry withdrawn", extra={"topic": self._topic})
        except Exception as exc:  # gateways drop it once its heartbeats are stale
            log.warning("could not withdraw the catalog entry", extra={"error": str(exc)})

    async def _beat(self) -> None:
        while True:
            entry = Entry(self._group, self._instance, int(self._clock() * 1000), self._methods)
            delivery = self._producer.send(self._topic, entry.value(), entry.key, [])
            try:
                # The first answer is awaited only so long: readiness waits for it (`Worker.ready`).
                wait = ANNOUNCE_WAIT if self._announced is not None else None
                await asyncio.wait_for(asyncio.shield(delivery), wait)
            except TimeoutError:
                log.warning("the catalog entry is not acknowledged yet", extra={"topic": self._topic})
            except Exception as exc:
                log.error(
                    "could not publish the catalog entry; gateways may answer 404 for its methods",
                    extra={"topic": self._topic, "error": str(exc)},
                )
            if self._announced is not None:
                announced, self._announced = self._announced, None
                announced()
            await asyncio.sleep(self._heartbeat)  # the heartbeat period itself
