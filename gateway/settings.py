"""Gateway settings, read once from ``GATEWAY_*`` environment variables and passed down."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kafkarpc import protocol
from kafkarpc.connection import PRODUCER_DEFAULTS, KafkaSettings
from kafkarpc.logs import LogFormat

from .headers import NEVER_PASSED

# librdkafka's default ``message.max.bytes``: the largest record the producer will send.
LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
# Room left for the key, reserved headers, forwarded caller headers and batch framing.
HEADER_ROOM_BYTES = 16_384


class GatewaySettings(BaseSettings):
    """Everything the gateway process can be told; Kafka connection lives in `KafkaSettings`."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "0.0.0.0"
    """Interface uvicorn binds."""
    port: int = Field(default=8080, ge=0, le=65535)
    """HTTP port for the API, /metrics, /healthz and /readyz."""
    request_topic: str = "requests"
    """Topic RPC requests are produced to (never created by the gateway)."""
    reply_topic: str = "replies"
    """Topic workers reply to (never created by the gateway)."""
    reply_partition: int | None = Field(default=None, ge=0)
    """Reply partition this replica reads; unset picks one at random at start."""
    default_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a reply when the caller sends no ``Prefer: wait``."""
    max_timeout: float = Field(default=30.0, gt=0)
    """Upper bound for ``Prefer: wait``; also bounds librdkafka ``message.timeout.ms``."""
    max_pending: int = Field(default=10_000, gt=0)
    """Requests awaiting a reply at once; above it new requests are shed."""
    shed_status: int = 503
    """Status for shed requests: 503 (server overloaded) or 429 (caller should slow down)."""
    retry_after: int = Field(default=1, ge=0)
    """Seconds sent in ``Retry-After`` with 429/503 answers."""
    max_body_bytes: int | None = Field(default=None, gt=0)
    """Largest request body; unset follows librdkafka ``message.max.bytes`` minus header room."""
    forward_headers: list[str] = Field(
        default_factory=lambda: ["accept", "accept-language", "idempotency-key", "x-request-id"]
    )
    """Caller headers copied onto the request record (JSON list); every other one stays behind."""
    max_header_bytes: int = Field(default=16_384, ge=1_024)
    """Request line plus all headers; above it the answer is 431 before the app runs."""
    max_forward_header_bytes: int = Field(default=8_192, gt=0)
    """Total size of forwarded caller headers; above it the answer is 431."""
    catalog_topic: str = "rpc-catalog"
    """Compacted topic workers announce their methods on (never created); empty: no catalog."""
    catalog_stale_after: float = Field(default=30.0, gt=0)
    """Seconds after a worker's last catalog heartbeat that its methods stop counting."""
    unknown_methods: Literal["reject", "forward"] = "reject"
    """A method no live worker announces: ``reject`` (404 at once) or ``forward`` (for workers that
    publish no catalog; the caller then waits for a reply or its deadline)."""
    response_headers: list[str] = Field(default_factory=list)
    """Worker reply headers passed to callers besides location, etag, cache-control,
    content-language and retry-after (JSON list); hop-by-hop and framing headers never pass."""
    publish_topics: list[str] = Field(default_factory=list)
    """Topics ``POST /publish/{topic}`` may write to (JSON list); empty disables publishing."""
    stream_topics: list[str] = Field(default_factory=list)
    """Topics ``GET /stream/{topic}`` (SSE) and ``/ws/{topic}`` may follow (JSON list); empty disables."""
    max_streams: int = Field(default=10_000, gt=0)
    """Open stream connections at once (one consumer per topic serves them all); above it 503."""
    stream_buffer: int = Field(default=1_000, gt=0)
    """Records one stream connection may fall behind before it is cut off (so none slows the others)."""
    reply_stream_idle_timeout: float = Field(default=30.0, gt=0)
    """Seconds a streamed reply may go without a part; then it ends with an error and is cancelled."""
    reply_stream_max_duration: float = Field(default=300.0, gt=0)
    """Seconds a streamed reply may last in all; then it ends with an error and is cancelled."""
    reply_stream_buffer: int = Field(default=1_000, gt=0)
    """Parts of one streamed reply held for a slow reader (besides those of the fetch batch being
    routed); past it the stream ends with an error, so memory stays bounded."""
    async_timeout: float = Field(default=600.0, gt=0, le=86_400)
    """Deadline of a ``Prefer: respond-async`` request in seconds: how long its worker may take."""
    result_key: SecretStr | None = None
    """Key that signs result locations (``Location`` of a 202); every replica needs the same one.
    Unset: a random key per process, so only the replica that took the request finds its result."""
    result_ttl: float = Field(default=3_600.0, gt=0)
    """Seconds a result location stays valid after its request's deadline."""
    result_readers: int = Field(default=4, gt=0)
    """Result lookups reading the reply topic at once (one consumer each); more wait their turn."""
    result_scan_limit: int = Field(default=100_000, gt=0)
    """Most reply records one lookup reads; a 202 then carries a location that starts past them."""
    metric_methods_limit: int = Field(default=100, gt=0)
    """Distinct method names given their own metric label; later ones share ``_other``."""
    consume_batch_size: int = Field(default=500, gt=0)
    """Most replies the consumer thread hands to the event loop at once."""
    startup_timeout: float = Field(default=10.0, gt=0)
    """Seconds one Kafka metadata or watermark call may take during start-up and probes."""
    broker_silence: float = Field(default=2.0, gt=0)
    """Seconds in which the brokers answered nothing (a metadata probe every half of it, or an
    acknowledgement) after which Kafka counts as unreachable: /readyz fails, new requests get 503,
    and records still queued are dropped and answered 504 (a hung broker keeps its connections).
    A hang is noticed 1 to 1.5 times this after it begins."""
    flush_timeout: float = Field(default=5.0, ge=0)
    """Seconds the producer may spend flushing at shutdown."""
    ack_interval: float = Field(default=0.005, ge=0)
    """Seconds between servings of the requests' delivery reports while only requests are in
    flight or their reports keep coming; 0: each as it comes. Their success is the reply, so
    only a refused request waits for the beat; a `POST /publish` or 202 being acknowledged
    turns the beat off until it is."""
    shutdown_grace: float | None = Field(default=None, gt=0)
    """Seconds uvicorn waits for in-flight requests after SIGTERM; unset means max_timeout + 5."""
    http_protocol: Literal["auto", "gateway", "h11"] = "auto"
    """HTTP protocol: ``gateway`` (uvicorn httptools plus the head limit, one write per response and
    the disconnect signal), ``h11`` (uvicorn's, slower), ``auto`` (gateway's on the verified uvicorn)."""
    head_timeout: float = Field(default=10.0, gt=0)
    """Seconds from a connection's opening, or its previous response, to a complete request head;
    then 408 and close (a connection that sent nothing is just closed)."""
    body_timeout: float = Field(default=10.0, gt=0)
    """Seconds an incomplete request body may go without a byte arriving; then 408 and close."""
    keepalive_timeout: float = Field(default=5.0, gt=0)
    """Seconds a kept-alive connection may stay idle after a response before it is closed."""
    max_connections: int = Field(default=10_000, gt=0)
    """Open HTTP connections served as usual; past it /healthz, /readyz and /metrics are still answered
    and everything else gets 503; 10 % further on (or near the open-files limit) new ones are closed."""
    timing: bool = False
    """Stamp requests (``rpc-timing``) and answer with a ``Server-Timing`` header of the stages."""
    log_level: str = "INFO"
    """Root log level."""
    log_format: LogFormat = "auto"
    """``json`` (one object per line), ``console`` (short lines), ``auto``: console on a terminal."""

    @field_validator("forward_headers")
    @classmethod
    def _no_reserved(cls, names: list[str]) -> list[str]:
        reserved = [name for name in names if protocol.is_reserved(name)]
        if reserved:
            raise ValueError(f"reserved headers cannot be forwarded: {reserved}")
        return [name.lower() for name in names]

    @field_validator("response_headers")
    @classmethod
    def _passable(cls, names: list[str]) -> list[str]:
        refused = [
            name for name in names if name.lower() in NEVER_PASSED or name.lower().startswith("proxy-")
        ]
        if refused:
            raise ValueError(f"hop-by-hop, framing or gateway headers cannot be passed to callers: {refused}")
        return [name.lower() for name in names]

    @field_validator("result_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < 32:
            raise ValueError("result_key must have at least 32 bytes (RFC 7518 §3.2)")
        return key

    @field_validator("shed_status")
    @classmethod
    def _shed_status(cls, status: int) -> int:
        if status not in (429, 503):
            raise ValueError("shed_status must be 429 or 503")
        return status

    @model_validator(mode="after")
    def _bounded_default(self) -> GatewaySettings:
        if self.default_timeout > self.max_timeout:
            raise ValueError("default_timeout must not exceed max_timeout")
        return self

    def body_limit(self, kafka_config: dict[str, object]) -> int:
        """The body size limit: explicit, or the producer's ``message.max.bytes`` minus header room."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        message_max = int(str(kafka_config.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES)))
        return message_max - HEADER_ROOM_BYTES

    @property
    def graceful_shutdown_seconds(self) -> float:
        """How long SIGTERM waits for in-flight requests before cancelling them."""
        return self.shutdown_grace if self.shutdown_grace is not None else self.max_timeout + 5.0

    def producer_config(self, kafka: KafkaSettings, instance: str) -> dict[str, Any]:
        """The request producer's librdkafka config (it holds secrets: log only `redacted`).

        Every property can be overridden through ``KAFKA_PROPERTIES`` except that
        ``message.timeout.ms`` is capped at the longest request timeout, so nothing is
        written after the caller who sent it has been answered 504.
        """
        max_timeout_ms = int(self.max_timeout * 1000)
        config = kafka.client_config(
            {
                **PRODUCER_DEFAULTS,
                "client.id": f"rpc-gateway-{instance}",
                "message.timeout.ms": max_timeout_ms,
            }
        )
        config["message.timeout.ms"] = min(int(config["message.timeout.ms"]), max_timeout_ms)
        return config

    def consumer_config(self, kafka: KafkaSettings, instance: str) -> dict[str, Any]:
        """The reply and stream consumers' librdkafka config: assign()-only, no commits.

        librdkafka insists on a ``group.id``; it is unique per process and never joined,
        because partitions are assigned, not subscribed.
        """
        return kafka.client_config(
            {
                "client.id": f"rpc-gateway-{instance}",
                "group.id": f"rpc-gateway-{instance}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "allow.auto.create.topics": False,
                # A parked fetch returns as soon as a record arrives, so this bounds only empty
                # polls: 100 ms instead of 10 cut idle broker CPU ~3x with no latency change (bench).
                "fetch.wait.max.ms": 100,
                "fetch.error.backoff.ms": 10,
                "socket.nagle.disable": True,
                "statistics.interval.ms": 5000,  # reply consumer lag for the metric
            }
        )
