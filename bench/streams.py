"""``python -m bench.streams``: N Server-Sent Events subscribers on one topic of one real gateway.

Starts a broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names one), a fresh topic and ONE
``python -m gateway`` streaming it, then, in phases, on loopback:

1. idle: the gateway's RSS and CPU with no subscriber;
2. connect: N subscribers (`bench.subscribers`) open in batches, each streaming (it has
   the ``: streaming`` preamble) before the next batch; gateway CPU per subscriber;
3. held: N idle subscribers for a few seconds;
4. fan-out: one warm-up record, then R records, each produced only once the one before
   reached every subscriber (plus a short gap), each carrying its produce time; for each
   record the delay to the first and to the last subscriber; CPU per record;
5. disconnect: every subscriber hangs up; RSS once the gateway counts none.

Every subscriber must receive every record, in order, with no overflow: the run writes its
results either way and exits 1 if one did not. Results go to ``<out>/<name>.json`` and
``.md`` (default docs/benchmarks/streams); ``--smoke`` is a seconds-long run for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.settings import GatewaySettings

from . import streamsreport
from .cpu import CpuMeter, CpuSample, rss_bytes
from .loadgen import new_loop
from .machine import RunStart, facts, load_average, raise_open_files
from .stack import REPO_ROOT, ServerOptions, Stack
from .subscribers import Subscribers

SUBSCRIBERS_GAUGE = "rpcgw_stream_subscribers"
GC_COLLECTIONS = "python_gc_collections_total"
SMOKE_SUBSCRIBERS = 200
SMOKE_RECORDS = 5
WARMUP_RECORDS = 1
"""Produced before the measured records: the producer's first send and the first fan-out."""
CONNECT_BATCH = 500
"""Subscribers connecting at once: well under uvicorn's listen backlog (2048) and somaxconn."""
BATCH_SECONDS = 60.0
"""Longest one batch of subscribers may take to be streaming."""
RECORD_SECONDS = 60.0
"""Longest one record may take to reach every subscriber before it is counted missing."""
IDLE_SECONDS = 3.0
"""Length of the idle and held windows."""
SETTLE_SECONDS = 30.0
"""Longest the gateway may take to count every hung-up subscriber gone."""
SPARE_FILES = 200
"""Open files beyond one per subscriber: the loop, Kafka clients, logs, the interpreter."""


class StreamStack(Stack):
    """The broker and ONE stock gateway streaming a fresh topic; no worker, no echo server.

    The request and reply topics exist only because the gateway is not ready without them.
    """

    def __init__(self, subscribers: int, partitions: int) -> None:
        super().__init__(ServerOptions())
        self.stream_topic = f"bench-stream-{self.suffix}"
        self.partitions = partitions
        self.options.gateway_env |= {
            "GATEWAY_STREAM_TOPICS": orjson.dumps([self.stream_topic]).decode(),
            "GATEWAY_CATALOG_TOPIC": "",  # no worker here: nothing to announce
            "GATEWAY_MAX_STREAMS": str(subscribers),
        }

    def start(self) -> None:
        """Broker, topics and the gateway, ready before returning."""
        self.kafka.start()
        self.kafka.create_topics(
            {self.request_topic: 1, self.reply_topic: 1, self.stream_topic: self.partitions}
        )
        self._spawn("gateway", self._gateway_command(self.gateway_port), self._gateway_env(self.gateway_port))
        self._wait_ready("gateway", f"http://127.0.0.1:{self.gateway_port}/readyz")

    def subscribers_gauge(self) -> int:
        """Stream connections the gateway counts open."""
        return int(self._metric(SUBSCRIBERS_GAUGE))

    def full_collections(self) -> int:
        """Full (generation 2) garbage collections the gateway has run so far.

        Each one walks every object the interpreter tracks, those each open stream keeps alive included,
        with the event loop stopped: at thousands of streams, the largest delays.
        """
        return int(self._metric(GC_COLLECTIONS, generation="2"))

    def _metric(self, name: str, **labels: str) -> float:
        """Sum of the gateway's /metrics samples called ``name`` that carry ``labels``."""
        url = f"http://127.0.0.1:{self.gateway_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


@dataclass
class Phases:
    """CPU seconds per process and wall seconds of each phase, and the gateway's RSS along the way."""

    meter: CpuMeter
    full_collections: Callable[[], int]
    """The gateway's count of full garbage collections so far."""
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    _start: tuple[CpuSample, float, int] | None = None

    def begin(self) -> None:
        """Start a window."""
        self._start = self.meter.sample(), time.monotonic(), self.full_collections()

    def end(self, name: str) -> None:
        """Close the window begun last, as phase ``name``."""
        assert self._start is not None, "end() without begin()"
        before, started, collections = self._start
        after, seconds = self.meter.sample(), time.monotonic() - started
        used = {p: after.seconds[p] - before.seconds[p] for p in after.seconds if p in before.seconds}
        self.windows[name] = {
            "seconds": round(seconds, 3),
            "cpu_seconds": {p: round(value, 3) for p, value in used.items()},
            "cores": CpuMeter.utilisation(before, after, seconds),
            "gateway_full_gcs": self.full_collections() - collections,
        }
        self._start = None

    def rss(self, name: str, pid: int) -> None:
        """Record ``pid``'s resident set now, as ``name``."""
        self.rss_mib[name] = round(rss_bytes(pid) / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    """Run, write the report, print where it is; exit status 1 unless every record reached everyone."""
    args = _parser().parse_args(argv)
    subscribers = args.subscribers or (SMOKE_SUBSCRIBERS if args.smoke else 10_000)
    records = args.records or (SMOKE_RECORDS if args.smoke else 20)
    name = args.name or ("streams-smoke" if args.smoke else "streams")
    # One socket per subscriber here, and one per subscriber in the gateway, which inherits the limit.
    open_files = raise_open_files(subscribers + SPARE_FILES)
    start = RunStart.now()
    _log(
        f"{subscribers} subscribers, {records} records, "
        f"load average {start.load_before}, open files {open_files}"
    )
    stack = StreamStack(subscribers, args.partitions)
    with stack, asyncio.Runner(loop_factory=new_loop) as runner:
        _log(f"gateway up on port {stack.gateway_port}, Kafka {stack.kafka.bootstrap_servers}")
        results = runner.run(_measure(stack, subscribers, records, args.gap))
        kafka_version = str(stack.kafka.version)
    document = {
        "meta": {
            "started": start.started,
            "commit": start.commit,
            "kafka": kafka_version,
            "load_before": start.load_before,
            "load_after": load_average(),
            "machine": facts(),
            "smoke": args.smoke,
        },
        "setup": {
            "subscribers": subscribers,
            "records": records,
            "warmup_records": WARMUP_RECORDS,
            "partitions": args.partitions,
            "gap_seconds": args.gap,
            "connect_batch": min(CONNECT_BATCH, subscribers),
            "stream_buffer": GatewaySettings().stream_buffer,
        },
        **results,
    }
    paths = streamsreport.write(document, Path(args.out), name)
    delivery = document["delivery"]
    _log(f"wrote {' and '.join(str(path) for path in paths)}")
    _log(f"delivery {delivery}")
    _log(f"figures {orjson.dumps(document['figures']).decode()}")
    return 0 if delivery["complete"] else 1


async def _measure(stack: StreamStack, count: int, records: int, gap: float) -> dict[str, Any]:
    gateway = stack.children["gateway"].pid
    phases = Phases(CpuMeter({**stack.pids, "client": os.getpid()}), stack.full_collections)
    phases.rss("idle", gateway)
    phases.begin()
    await asyncio.sleep(IDLE_SECONDS)  # a measuring window: CPU of the gateway with no subscriber
    phases.end("idle")

    subscribers = Subscribers("127.0.0.1", stack.gateway_port, stack.stream_topic, count)
    try:
        phases.begin()
        await subscribers.open(CONNECT_BATCH, BATCH_SECONDS, _progress(count))
        phases.end("connect")
        gauge = await asyncio.to_thread(stack.subscribers_gauge)
        phases.rss("connected", gateway)
        phases.begin()
        await asyncio.sleep(IDLE_SECONDS)  # a measuring window: CPU of N idle subscribers
        phases.end("held")

        produced = Records(stack, subscribers)
        await produced.send(range(WARMUP_RECORDS), gap)
        phases.begin()
        await produced.send(range(WARMUP_RECORDS, WARMUP_RECORDS + records), gap)
        phases.end("fan_out")
        await produced.flush()
        phases.rss("after_records", gateway)
        phases.rss("client_after_records", os.getpid())
    finally:
        phases.begin()
        subscribers.close()
        left = await _settled(stack)
        phases.end("disconnect")
    phases.rss("after_disconnect", gateway)
    stack.check_alive()
    total = WARMUP_RECORDS + records
    delivery = _delivery(subscribers, total, stack.partitions)
    delivery |= {
        "late_records": produced.late,
        "produce_failures": produced.failures,
        "gauge_connected": gauge,
        "gauge_after_disconnect": left,
    }
    delivery["complete"] = delivery["complete"] and not produced.failures and gauge == count and not left
    delays = _delays(subscribers, range(WARMUP_RECORDS, total), produced.full_gcs)
    return {
        "delivery": delivery,
        "delays": delays,
        "phases": phases.windows,
        "rss_mib": phases.rss_mib,
        "figures": _figures(phases, delays, count, records),
    }


class Records:
    """Produces the numbered records, each once the one before reached every subscriber."""

    def __init__(self, stack: StreamStack, subscribers: Subscribers) -> None:
        settings = GatewaySettings(request_topic=stack.request_topic, reply_topic=stack.reply_topic)
        # The gateway's own producer settings (acks=all, idempotence, linger.ms=1).
        self._producer = confluent_kafka.Producer(
            settings.producer_config(stack.kafka_settings, "bench-streams")
        )
        self._topic = stack.stream_topic
        self._full_collections = stack.full_collections
        self._arrivals = subscribers.arrivals
        self.failures: list[str] = []
        """Delivery errors the producer reported."""
        self.late = 0
        """Records that had not reached every subscriber within `RECORD_SECONDS`."""
        self.full_gcs: dict[int, int] = {}
        """Full garbage collections the gateway ran from each record's produce to the next one's."""

    async def send(self, seqs: range, gap: float) -> None:
        """Produce record ``seq`` for each of ``seqs``, then wait for it to reach everyone, then ``gap``."""
        collections = await asyncio.to_thread(self._full_collections)
        for seq in seqs:
            # Stamped immediately before produce(): the delay includes the producer's linger.ms.
            value = orjson.dumps({"seq": seq, "produced_ns": time.monotonic_ns()})
            self._producer.produce(self._topic, value, on_delivery=self._delivered)
            self._producer.poll(0)
            try:
                async with asyncio.timeout(RECORD_SECONDS):
                    await self._arrivals.everywhere(seq)
            except TimeoutError:
                self.late += 1
            await asyncio.sleep(gap)  # pacing, not synchronisation: the next fan-out starts from quiet
            now = await asyncio.to_thread(self._full_collections)
            self.full_gcs[seq], collections = now - collections, now

    async def flush(self) -> None:
        """Wait for every delivery report."""
        await asyncio.to_thread(self._producer.flush, 10)

    def _delivered(self, error: confluent_kafka.KafkaError | None, _: confluent_kafka.Message) -> None:
        if error is not None:
            self.failures.append(str(error))


async def _settled(stack: StreamStack) -> int:
    """Wait until the gateway counts no stream open; returns how many it still counts."""
    deadline = time.monotonic() + SETTLE_SECONDS
    # The gateway exposes no event for this: poll its gauge, bounded.
    while (left := await asyncio.to_thread(stack.subscribers_gauge)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return left


def _delivery(subscribers: Subscribers, total: int, partitions: int) -> dict[str, Any]:
    """Whether every subscriber got every record once (in order, with one partition), and what went wrong."""
    expected = set(range(total))
    missing = duplicates = out_of_order = 0
    for member in subscribers.members:
        got = set(member.seqs)
        missing += len(expected - got)
        duplicates += len(member.seqs) - len(got)
        out_of_order += partitions == 1 and member.seqs != sorted(member.seqs)
    counts = {
        "subscribers": len(subscribers.members),
        "missing": missing,
        "duplicates": duplicates,
        "out_of_order_subscribers": out_of_order,
        "overflowed": sum(member.overflowed for member in subscribers.members),
        "lost_early": sum(member.lost_early for member in subscribers.members),
        "keepalives": sum(member.keepalives for member in subscribers.members),
    }
    complete = counts["subscribers"] == subscribers.count and not any(
        counts[key]
        for key in ("missing", "duplicates", "out_of_order_subscribers", "overflowed", "lost_early")
    )
    return {**counts, "complete": complete}


def _delays(subscribers: Subscribers, seqs: range, full_gcs: dict[int, int]) -> list[dict[str, Any]]:
    """Per record: produce-to-arrival delay of the first, median and last subscriber, in ms."""
    rows: list[dict[str, Any]] = []
    arrivals = subscribers.arrivals
    for seq in seqs:
        times = sorted(arrivals.times.get(seq, ()))
        if not times:
            rows.append({"seq": seq, "received": 0, "gateway_full_gcs": full_gcs.get(seq, 0)})
            continue
        produced = arrivals.produced[seq]
        rows.append(
            {
                "seq": seq,
                "received": len(times),
                "first_ms": round((times[0] - produced) / 1e6, 3),
                "median_ms": round((times[len(times) // 2] - produced) / 1e6, 3),
                "last_ms": round((times[-1] - produced) / 1e6, 3),
                "gateway_full_gcs": full_gcs.get(seq, 0),
            }
        )
    return rows


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def _figures(phases: Phases, delays: list[dict[str, Any]], count: int, records: int) -> dict[str, Any]:
    """The headline numbers: RSS, CPU per subscriber and per record, delays over the records."""
    connect, fan_out = phases.windows["connect"], phases.windows["fan_out"]
    gateway_fan_out = fan_out["cpu_seconds"].get("gateway", 0.0)
    timed = [row for row in delays if "last_ms" in row]
    quiet = [row["last_ms"] for row in timed if not row["gateway_full_gcs"]]
    collected = [row["last_ms"] for row in timed if row["gateway_full_gcs"]]
    rss = phases.rss_mib
    return {
        "gateway_rss_mib": {
            "idle": rss["idle"],
            "connected": rss["connected"],
            "after_records": rss["after_records"],
            "after_disconnect": rss["after_disconnect"],
            "per_subscriber_kib": round((rss["connected"] - rss["idle"]) * 1024 / count, 1),
        },
        "client_rss_mib": rss["client_after_records"],
        "connect_seconds": connect["seconds"],
        "gateway_cpu_us_per_connect": round(connect["cpu_seconds"].get("gateway", 0.0) * 1e6 / count, 1),
        "gateway_cpu_ms_per_record": round(gateway_fan_out * 1e3 / records, 1),
        "gateway_cpu_us_per_delivery": round(gateway_fan_out * 1e6 / (records * count), 2),
        "client_cpu_ms_per_record": round(fan_out["cpu_seconds"].get("client", 0.0) * 1e3 / records, 1),
        "gateway_idle_cores": phases.windows["idle"]["cores"].get("gateway", 0.0),
        "gateway_held_cores": phases.windows["held"]["cores"].get("gateway", 0.0),
        "gateway_full_gcs": {name: window["gateway_full_gcs"] for name, window in phases.windows.items()},
        "delay_first_ms": _spread([row["first_ms"] for row in timed]),
        "delay_median_subscriber_ms": _spread([row["median_ms"] for row in timed]),
        "delay_last_ms": _spread([row["last_ms"] for row in timed]),
        "fan_out_ms": _spread([round(row["last_ms"] - row["first_ms"], 3) for row in timed]),
        "records_with_full_gc": len(collected),
        "delay_last_ms_without_full_gc": _spread(quiet),
        "delay_last_ms_with_full_gc": _spread(collected),
    }


def _progress(count: int) -> Callable[[int], None]:
    step = max(count // 5, 1)

    def report(streaming: int) -> None:
        if streaming % step < CONNECT_BATCH or streaming == count:
            _log(f"{streaming} subscribers streaming")

    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, metavar="N", help="SSE subscribers (default 10000)")
    parser.add_argument("--records", type=int, metavar="R", help="measured records (default 20)")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_SUBSCRIBERS} subscribers, {SMOKE_RECORDS} records"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="partitions of the streamed topic (default 1: produce order is delivery order, checked)",
    )
    parser.add_argument(
        "--gap", type=float, default=0.5, help="seconds between one fan-out and the next record"
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"), help="output directory")
    parser.add_argument("--name", help="file name stem (default streams, or streams-smoke)")
    return parser


def _log(text: str) -> None:
    print(f"[bench.streams] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
