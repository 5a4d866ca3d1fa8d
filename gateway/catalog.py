"""`Catalog`: the methods and routes workers serve now, read live from the catalog topic.

A `Fetcher` reads every partition of the compacted topic from the beginning. The catalog
is `ready` once it has read up to the end it found at start, and the gateway is not ready
before. Each record is one worker process's entry (`kafkarpc.catalog`); an entry counts while
its heartbeat is younger than ``stale_after``. A record that breaks the format, is too
large, or claims a path the gateway keeps for itself is refused whole, logged and counted,
and the entry it would have replaced stays. When two groups claim one route, the first key
in order keeps it and the other is counted as a conflict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from kafkarpc import routes, topics
from kafkarpc.catalog import Entry, Method
from kafkarpc.errors import ProtocolError
from kafkarpc.fetcher import Fetcher
from kafkarpc.startup import retrying

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, Message

    from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

RESERVED_PATHS = ("/rpc/", "/stream/", "/ws/", "/publish/", "/docs", "/static-docs/")
RESERVED_EXACT = ("/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/asyncapi.json")
EXPIRY_SECONDS = 1.0
"""How often entries are checked for a stale heartbeat."""


@dataclass(frozen=True, slots=True)
class Served:
    """A method some live worker serves, as its catalog entry describes it."""

    method: Method
    groups: tuple[str, ...]
    """Worker groups serving it."""


@dataclass(frozen=True, slots=True)
class Match:
    """The answer to a route lookup."""

    method: str | None
    """The method to call; None when the path is known but not for this verb."""
    route: routes.Route | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()
    """The verbs the path has routes for, when ``method`` is None (for 405's ``Allow``)."""


class Catalog:
    """The live method catalog; construct it on the event loop."""

    def __init__(
        self,
        client: ConsumerClient,
        topic: str,
        *,
        stale_after: float,
        timeout: float,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._topic = topic
        self._stale_after = stale_after
        self._timeout = timeout
        self._metrics = metrics
        self._clock = clock
        self._fetcher = Fetcher(client, name="rpcgw-catalog", on_batch=self._apply)
        self._entries: dict[bytes, Entry] = {}
        self._ends: dict[int, int] = {}  # partition -> offset to reach before ready (fetch thread, then loop)
        self._expiry: asyncio.Task[None] | None = None
        self._conflicts: set[str] = set()  # reported once each, not at every rebuild
        self.ready = asyncio.Event()
        """Set once everything on the topic at start has been read."""
        self.version = 0
        """Changes whenever the served methods or routes change (caches key on it)."""
        self.served: dict[str, Served] = {}
        """Methods live workers serve, by name."""
        self._literal: dict[str, dict[str, tuple[str, routes.Route]]] = {}
        self._templates: list[tuple[routes.Route, str]] = []
        metrics.catalog_methods.set_function(lambda: len(self.served))

    async def start(self) -> None:
        """Read the topic up to its current end; returns once `ready`."""
        self._fetcher.start(self._assign_from_beginning)
        await asyncio.shield(self._fetcher.started)
        if not self._ends:
            self.ready.set()
        self._expiry = asyncio.get_running_loop().create_task(self._expire(), name="catalog-expiry")
        await self.ready.wait()
        log.info("catalog read", extra={"topic": self._topic, "methods": sorted(self.served)})

    async def stop(self) -> None:
        """Stop reading; idempotent."""
        if self._expiry is not None:
            self._expiry.cancel()
        try:
            await self._fetcher.close()
        except Exception:
            log.warning("the catalog consumer had failed", exc_info=True)

    def serves(self, method: str) -> bool:
        """Whether a live worker serves ``method``."""
        return method in self.served

    def match(self, verb: str, path: str) -> Match | None:
        """The method a route sends ``verb path`` to; None when no route has that path."""
        by_verb = self._literal.get(path)
        if by_verb is not None:
            found = by_verb.get(verb)
            if found is not None:
                return Match(found[0], found[1], {})
            return Match(None, None, {}, tuple(sorted(by_verb)))
        allowed: list[str] = []
        for route, method in self._templates:
            params = route.match(path)
            if params is None:
                continue
            if route.verb == verb:
                return Match(method, route, params)
            allowed.append(route.verb)
        return Match(None, None, {}, tuple(sorted(allowed))) if allowed else None

    def _assign_from_beginning(self, client: ConsumerClient) -> None:
        for attempt in retrying(lambda: self._fetcher.stopping):
            with attempt:
                metadata = client.list_topics(self._topic, timeout=self._timeout).topics.get(self._topic)
                problem = topics.unusable(self._topic, metadata)
                if problem is not None:
                    raise LookupError(f"catalog: {problem}")
                ends = {}
                for number in metadata.partitions:
                    watermarks = client.get_watermark_offsets(
                        TopicPartition(self._topic, number), timeout=self._timeout
                    )
                    if watermarks is None:
                        raise KafkaException(f"no watermarks for {self._topic}[{number}]")
                    low, high = watermarks
                    if high > low:
                        ends[number] = high
        self._ends = ends
        client.assign([TopicPartition(self._topic, n, OFFSET_BEGINNING) for n in metadata.partitions])

    def _apply(self, messages: list[Message], _fetched_at: float) -> None:
        changed = False
        for message in messages:
            changed |= self._record(message)
            partition, offset = message.partition(), message.offset()
            end = self._ends.get(partition or 0)
            if end is not None and offset is not None and offset + 1 >= end:
                del self._ends[partition or 0]
        if changed:
            self._rebuild()
        if not self._ends:
            self.ready.set()

    def _record(self, message: Message) -> bool:
        """Apply one record; whether the entries changed."""
        key, value = message.key(), message.value()
        if key is None:
            self._refuse("no_key", "a catalog record has no key")
            return False
        if value is None:
            return self._entries.pop(key, None) is not None
        try:
            entry = Entry.from_record(value)
            for method in entry.methods:
                for route in method.routes:
                    _check_path(routes.parse(route).template)
        except ProtocolError as exc:
            self._refuse("reserved_path" if "reserved" in str(exc) else "invalid", str(exc)[:300])
            return False
        if entry.key != key:
            self._refuse("invalid", f"record key {key!r} is not {entry.key!r}")
            return False
        self._entries[key] = entry
        return True

    def _refuse(self, reason: str, detail: str) -> None:
        self._metrics.catalog_refused.labels(reason).inc()
        log.warning("catalog record refused", extra={"reason": reason, "detail": detail})

    def _rebuild(self) -> None:
        """The served methods and route tables from the live entries."""
        live_after = (self._clock() - self._stale_after) * 1000
        served: dict[str, Served] = {}
        literal: dict[str, dict[str, tuple[str, routes.Route]]] = {}
        templates: list[tuple[routes.Route, str]] = []
        claimed: dict[tuple[str, str], str] = {}
        for _, entry in sorted(self._entries.items()):
            if entry.heartbeat_ms < live_after:
                continue
            for method in entry.methods:
                known = served.get(method.method)
                groups = (known.groups if known else ()) + (entry.group,)
                served[method.method] = Served(
                    known.method if known else method, tuple(dict.fromkeys(groups))
                )
                for text in method.routes:
                    route = routes.parse(text)
                    owner = claimed.get((route.verb, route.template))
                    if owner is not None:
                        conflict = f"{route} is {owner}'s, not {method.method}'s"
                        if owner != method.method and conflict not in self._conflicts:
                            self._conflicts.add(conflict)
                            self._refuse("route_conflict", conflict)
                        continue  # another process of the same method, or a conflict: first one kept
                    claimed[route.verb, route.template] = method.method
                    if route.literal:
                        literal.setdefault(route.template, {})[route.verb] = (method.method, route)
                    else:
                        templates.append((route, method.method))
        if served.keys() != self.served.keys() or any(
            served[name].method.digest != self.served[name].method.digest for name in served
        ):
            self.version += 1
        self.served, self._literal, self._templates = served, literal, templates

    async def _expire(self) -> None:
        """Drop entries whose heartbeats stopped (their worker crashed or was partitioned away)."""
        while True:
            await asyncio.sleep(EXPIRY_SECONDS)  # the check period itself
            before = self.version
            self._rebuild()
            if self.version != before:
                log.info("catalog changed: stale entries dropped", extra={"methods": sorted(self.served)})


def _check_path(template: str) -> None:
    if template in RESERVED_EXACT or any(template.startswith(prefix) for prefix in RESERVED_PATHS):
        raise ProtocolError(f"route path {template} is reserved for the gateway")
