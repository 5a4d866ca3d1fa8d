"""`assemble`: the gateway's components, built from its settings and wired together.

One `Gateway` per app, shared by every route through ``app.state.gateway``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafkarpc import protocol
from kafkarpc.producer import AsyncProducer
from kafkarpc.statistics import consumer_lag

from .catalog import Catalog
from .client import RequestReplyClient
from .correlation import CorrelationIds
from .feeds import Streams
from .headers import HeaderPolicy
from .health import KafkaHealth
from .locations import ResultLocations, signing_key
from .lookup import ResultLookup
from .metrics import GatewayMetrics
from .pending import PendingReplies
from .publisher import TopicPublisher
from .replies import ReplyListener, ReplyRouter

if TYPE_CHECKING:
    from kafkarpc.clients import KafkaClients
    from kafkarpc.connection import KafkaSettings
    from kafkarpc.tracing import Tracer

    from .settings import GatewaySettings


@dataclass(slots=True)
class Gateway:
    """The running components, shared by all routes through ``app.state.gateway``."""

    settings: GatewaySettings
    ids: CorrelationIds
    metrics: GatewayMetrics
    headers: HeaderPolicy
    body_limit: int
    """Largest accepted request body in bytes."""
    health: KafkaHealth
    producer: AsyncProducer
    listener: ReplyListener
    client: RequestReplyClient
    publisher: TopicPublisher
    streams: Streams
    catalog: Catalog | None
    """The method catalog; None when ``GATEWAY_CATALOG_TOPIC`` is empty."""
    locations: ResultLocations
    """Signs and reads the result locations of ``Prefer: respond-async`` requests."""
    lookup: ResultLookup
    """Finds results on the reply topic, for ``GET /results/{token}``."""


def assemble(
    settings: GatewaySettings,
    kafka_settings: KafkaSettings,
    clients: KafkaClients,
    tracer: Tracer | None = None,
) -> Gateway:
    """The components, not yet started (`RequestReplyClient.start` reaches Kafka); ``tracer``
    traces each request's produce and its reply's arrival."""
    ids = CorrelationIds()
    metrics = GatewayMetrics(settings.max_timeout, settings.metric_methods_limit)
    pending: PendingReplies[protocol.Reply] = PendingReplies(settings.max_pending)
    health = KafkaHealth(
        settings.request_topic, settings.reply_topic, settings.startup_timeout, settings.broker_silence
    )
    producer_config = settings.producer_config(kafka_settings, ids.tag)
    producer = AsyncProducer(
        clients,
        {**producer_config, "error_cb": health.on_error},
        eager=kafka_settings.eager_send,
        report_interval=settings.ack_interval,
    )
    health.attach(producer)
    # A traced reply's arrival span starts when its batch was fetched: the router's stamps say when.
    stamped = settings.timing or tracer is not None
    router = ReplyRouter(pending, ids, metrics, timing=stamped, part_buffer=settings.reply_stream_buffer)

    def reply_lag(statistics: str) -> None:
        metrics.reply_consumer_lag.set(consumer_lag(statistics, since="delivered"))

    consumer_config = settings.consumer_config(kafka_settings, ids.tag)
    listener = ReplyListener(
        clients.consumer({**consumer_config, "error_cb": health.on_error, "stats_cb": reply_lag}),
        on_batch=router.route,
        batch_size=settings.consume_batch_size,
        timeout=settings.startup_timeout,
    )
    client = RequestReplyClient(
        settings=settings,
        ids=ids,
        pending=pending,
        producer=producer,
        listener=listener,
        router=router,
        health=health,
        metrics=metrics,
        tracer=tracer,
    )
    return Gateway(
        settings=settings,
        ids=ids,
        metrics=metrics,
        headers=HeaderPolicy(
            settings.forward_headers, settings.max_forward_header_bytes, settings.response_headers
        ),
        body_limit=settings.body_limit(producer_config),
        health=health,
        producer=producer,
        listener=listener,
        client=client,
        publisher=TopicPublisher(
            producer, settings.publish_topics, settings.startup_timeout, refused=client.produce_failed
        ),
        streams=Streams(
            clients,
            consumer_config,
            frozenset(settings.stream_topics),
            max_streams=settings.max_streams,
            buffer=settings.stream_buffer,
            timeout=settings.startup_timeout,
            metrics=metrics,
        ),
        locations=ResultLocations(signing_key(settings), settings.result_ttl),
        lookup=ResultLookup(
            clients,
            {**consumer_config, "error_cb": health.on_error},
            settings.reply_topic,
            readers=settings.result_readers,
            scan_limit=settings.result_scan_limit,
            timeout=settings.startup_timeout,
        ),
        catalog=None
        if not settings.catalog_topic
        else Catalog(
            clients.consumer({**consumer_config, "error_cb": health.on_error}),
            settings.catalog_topic,
            stale_after=settings.catalog_stale_after,
            timeout=settings.startup_timeout,
            metrics=metrics,
        ),
    )
