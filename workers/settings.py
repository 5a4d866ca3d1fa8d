"""Worker configuration, read once from ``WORKER_*`` environment variables at the edge."""

from __future__ import annotations

import os
import re
import socket
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kafkarpc.logs import LogFormat
from workers.eventloop import EventLoop

# Tuned for latency (PERFORMANCE.md 3); KAFKA_PROPERTIES overrides any of them.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": True,  # commits in the background ...
    "enable.auto.offset.store": False,  # ... only what store_offsets() marked as done
    "auto.commit.interval.ms": 1000,
    "auto.offset.reset": "earliest",  # a new group must not skip requests already waiting
    "partition.assignment.strategy": "cooperative-sticky",  # rebalances move only what moves
    "session.timeout.ms": 10000,  # a crashed worker's partitions move after 10 s
    "fetch.wait.max.ms": 100,  # bounds only empty polls (a record ends the wait): idle CPU
    "fetch.error.backoff.ms": 50,
    "socket.nagle.disable": True,
    "statistics.interval.ms": 5000,  # consumer lag for the metric
    "allow.auto.create.topics": False,  # subscribing to a missing topic must not create it
}
# Legal Kafka topic names (apache/kafka Topic.java).
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")


class WorkerSettings(BaseSettings):
    """Everything a worker process needs besides the Kafka connection (`KafkaSettings`)."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    handlers: Annotated[tuple[str, ...], NoDecode] = ()
    """``module:object`` specs of `HandlerRegistry` objects, comma-separated."""
    group_id: str = "rpc-workers"
    """Consumer group shared by every worker process serving the same methods."""
    request_topic: str = "requests"
    """Topic the requests arrive on."""
    reply_topics: Annotated[frozenset[str], NoDecode] = frozenset({"replies"})
    """Topics a reply may be sent to, comma-separated; requests naming another are dead-lettered."""
    dead_letter_topic: str = "requests.dlt"
    """Where poison records go, with the reason in headers."""
    catalog_topic: str = "rpc-catalog"
    """Compacted topic this worker announces its methods on; empty: announce nothing."""
    catalog_heartbeat: float = Field(default=10.0, gt=0)
    """Seconds between catalog announcements; gateways forget an entry some heartbeats after the last."""
    instance: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """This process's name in the catalog (its record key is ``<group_id>/<instance>``)."""
    concurrency: int = Field(default=64, ge=1)
    """Records handled at the same time by this process."""
    max_buffered: int = Field(default=0, ge=0)
    """Records held in memory (running + waiting) before fetching pauses; 0 means 4 x concurrency."""
    sync_threads: int = Field(default=0, ge=0)
    """Thread-pool size for synchronous handlers; 0 means ``concurrency``."""
    drain_timeout: float = Field(default=20.0, ge=0)
    """Seconds to let in-flight handlers finish on SIGTERM or partition revocation."""
    ack_interval: float = Field(default=0.005, ge=0)
    """Seconds between servings of the replies' acknowledgements while replies are in flight or
    their acknowledgements keep coming; 0: each as it comes. Nobody waits for them (they
    finish offsets), so under load one wake-up serves several, and a beat's are settled when
    the loop next wakes for a fetched batch, or at the next beat (docs/PERFORMANCE.md,
    "Acknowledgements on a beat", "Acknowledgements that ride on the next batch")."""
    retry_attempts: int = Field(default=3, ge=1)
    """Attempts per request when a handler raises `TransientError` (1 = no retry)."""
    retry_backoff: float = Field(default=0.05, ge=0)
    """First retry delay in seconds; doubles per attempt, with jitter."""
    retry_backoff_max: float = Field(default=1.0, ge=0)
    """Upper bound of one retry delay, seconds."""
    metrics_host: str = "0.0.0.0"
    """Address of the /metrics, /healthz and /readyz listener."""
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    """Port of that listener; 0 picks a free port (tests)."""
    log_level: str = "INFO"
    """Root log level."""
    log_format: LogFormat = "auto"
    """``json`` (one object per line), ``console`` (short lines), ``auto``: console on a terminal."""
    loop: EventLoop = "auto"
    """``uvloop``, ``asyncio`` (the standard library's), ``auto``: uvloop where it is installed."""

    @field_validator("handlers", mode="before")
    @classmethod
    def _split_handlers(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("reply_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: Any) -> Any:
        topics = _split(value)
        for topic in topics:
            if TOPIC_PATTERN.fullmatch(topic) is None:
                raise ValueError(f"{topic!r} is not a valid topic name")
        return frozenset(topics)

    @property
    def buffer_limit(self) -> int:
        """Effective `max_buffered`."""
        return self.max_buffered or 4 * self.concurrency

    @property
    def thread_count(self) -> int:
        """Effective `sync_threads`."""
        return self.sync_threads or self.concurrency


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value
