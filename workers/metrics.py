"""Prometheus metrics of one worker process (names per KUBERNETES.md section 5).

Each `WorkerMetrics` owns its `CollectorRegistry`, so several workers in one test process do
not collide and /metrics shows exactly this worker's series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Reply deadlines reach 30 s and beyond; the buckets must too (KUBERNETES.md section 5).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.records_consumed = Counter(
            "rpcworker_records_consumed", "Request records taken from Kafka.", registry=self.registry
        )
        self.handled = Counter(
            "rpcworker_handled",
            "Requests that reached a handler, by method and outcome "
            "(ok, client_error, server_error, expired, cancelled).",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.handler_duration = Histogram(
            "rpcworker_handler_duration_seconds",
            "Time spent in the handler including retries.",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "rpcworker_retries", "Handler retries after a TransientError.", ["method"], registry=self.registry
        )
        self.dead_lettered = Counter(
            "rpcworker_dead_lettered",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=self.registry,
        )
        self.expired = Counter(
            "rpcworker_expired",
            "Requests whose deadline passed before a reply could be sent; they get no reply.",
            registry=self.registry,
        )
        self.cancels = Counter(
            "rpcworker_cancels",
            "Cancel records, by the request's method and where it was: running, queued (then never "
            "run) or unknown (done already, or never here; method _unknown).",
            ["method", "stage"],
            registry=self.registry,
        )
        self.stream_parts = Counter(
            "rpcworker_stream_parts",
            "Parts of streamed replies sent (end records not included).",
            ["method"],
            registry=self.registry,
        )
        self.in_flight = Gauge("rpcworker_in_flight", "Handlers running now.", registry=self.registry)
        self.assigned_partitions = Gauge(
            "rpcworker_assigned_partitions", "Request partitions this worker owns.", registry=self.registry
        )
        self.fetch_paused = Gauge(
            "rpcworker_fetch_paused",
            "1 while fetching is paused because WORKER_MAX_BUFFERED records are held (back-pressure), "
            "from the moment the consumer thread has applied the pause.",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "rpcworker_consumer_lag",
            "Records behind the high watermark, summed over this worker's partitions.",
            registry=self.registry,
        )
