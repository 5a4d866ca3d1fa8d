"""``python -m bench.cancellation``: the worker CPU that cancel records save when callers leave.

One stack (`CancelStack`): a broker, ONE worker serving `bench.cancelwork` (CPU-bound handlers,
a thread one that polls its `Cancellation` flag and an async one cancelled at its next
``await``), and TWO stock gateways on the same request topic, differing in one setting:

- ``on``: reads the catalog, where the worker announces ``"cancel": true`` for every method,
  so a caller that disconnects makes it produce a cancel record (PROTOCOL.md "Cancel records");
- ``off``: ``GATEWAY_CATALOG_TOPIC=""``, so it knows no method's features and never sends one
  (``GATEWAY_UNKNOWN_METHODS=forward`` only states it: without a catalog every method is forwarded).

A burst is N callers that each send one request and disconnect ``hold`` ms later, long before
the handler is done; the measure is the worker's CPU seconds (``/proc``, `bench.cpu`) from the
first connect until the worker has finished or dropped every request of the burst, read from
its /metrics (``rpcworker_handled_total``, ``rpcworker_cancels_total``). Both gateways give
requests a deadline far beyond the burst (`DEADLINE_SECONDS`), so in the ``off`` arm every
handler runs to the end, as it would under a deadline longer than the work. Bursts alternate
between the arms, each round in the other order; the report gives medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from devstack.topics import COMPACTED

from .cancelwork import chunk_seconds
from .cpu import CpuMeter
from .loadgen import new_loop
from .machine import RunStart, facts, load_average
from .stack import REPO_ROOT, STOP_GRACE, ServerOptions, Stack, StackError, environment

KINDS = {"thread": "bench.spin", "async": "bench.spin_async"}
"""Handler kind -> method (`bench.cancelwork`)."""
ARMS = ("on", "off")
DEADLINE_SECONDS = 300
"""Both gateways' default and maximum wait: far beyond any burst, so no request expires."""
POLL_SECONDS = 0.25
"""How often the worker's /metrics is read while a burst drains (and during the idle window)."""
SETTLE_SECONDS = 0.5
"""Wait after the drain before the last CPU sample: a thread handler's last chunk, the commit."""
SCRAPE_TIMEOUT = 30.0
"""The worker serves /metrics on its event loop, which busy handler threads can starve for a while."""
DRAIN_SLACK, DRAIN_FACTOR = 60.0, 10.0
"""A burst must drain within slack + factor x its chunks x 1 ms (a loaded machine is slow)."""
CATALOG_SECONDS = 30.0
"""Longest the ``on`` gateway may take to read the worker's catalog entry."""


@dataclass(frozen=True)
class Plan:
    """The size of a run."""

    name: str
    calls: int
    """Callers per burst."""
    chunks: int
    """CPU chunks (`bench.cancelwork.chunk`, about 1 ms each) each handler runs when left alone."""
    hold_ms: float
    """How long each caller waits before it disconnects."""
    rounds: int
    """Bursts per kind and arm."""
    idle_seconds: float
    """Length of the window that measures the idle worker."""
    warmup: bool = True
    """A burst of one-chunk calls per kind and arm first (threads, connections, caches)."""


PLANS = {
    "full": Plan("full", calls=200, chunks=100, hold_ms=100.0, rounds=3, idle_seconds=5.0),
    "quick": Plan("quick", calls=50, chunks=40, hold_ms=100.0, rounds=1, idle_seconds=2.0),
    # Each handler must outlast the hold by far, or a reply beats the hang-up and no cancel is sent.
    "smoke": Plan("smoke", calls=12, chunks=120, hold_ms=100.0, rounds=1, idle_seconds=0.5, warmup=False),
}


class CancelStack(Stack):
    """The broker, the worker (`bench.cancelwork`) and the ``on`` and ``off`` gateways."""

    def __init__(self, worker_env: dict[str, str]) -> None:
        deadline = {
            "GATEWAY_DEFAULT_TIMEOUT": str(DEADLINE_SECONDS),
            "GATEWAY_MAX_TIMEOUT": str(DEADLINE_SECONDS),
        }
        super().__init__(ServerOptions(gateway_env=deadline, worker_env=worker_env))
        self.off_reply_topic = f"bench-replies-off-{self.suffix}"
        self.ports = {"on": self.gateway_port, "off": self.echo_port}  # no echo server here
        self.names = {"on": "gateway", "off": "gateway-off"}

    def start(self) -> None:
        """Broker, topics, worker and both gateways, each ready before returning."""
        self.kafka.start()
        self.kafka.create_topics(
            {
                self.request_topic: 1,
                self.reply_topic: 1,
                self.off_reply_topic: 1,
                f"{self.request_topic}.dlt": 1,
            }
        )
        self.kafka.create_topics({self.catalog_topic: 1}, COMPACTED)
        worker_env = {
            **self._worker_env(),
            "WORKER_HANDLERS": "bench.cancelwork:registry",
            "WORKER_REPLY_TOPICS": f"{self.reply_topic},{self.off_reply_topic}",
            **self.options.worker_env,
        }
        self._spawn("worker", [sys.executable, "-m", "workers"], worker_env)
        off = {
            "GATEWAY_CATALOG_TOPIC": "",
            "GATEWAY_UNKNOWN_METHODS": "forward",
            "GATEWAY_REPLY_TOPIC": self.off_reply_topic,
        }
        for arm, extra in (("on", {}), ("off", off)):
            port = self.ports[arm]
            self._spawn(self.names[arm], self._gateway_command(port), {**self._gateway_env(port), **extra})
        self._wait_ready("worker", f"http://127.0.0.1:{self.worker_port}/readyz")
        for arm in ARMS:
            self._wait_ready(self.names[arm], f"http://127.0.0.1:{self.ports[arm]}/readyz")

    def close(self) -> None:
        """The ``off`` gateway first, then the rest as `Stack.close` does."""
        child = self.children.pop(self.names["off"], None)
        if child is not None:
            child.stop(STOP_GRACE)
        super().close()


class Metrics:
    """One scrape of a /metrics page."""

    def __init__(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            text = response.read().decode()
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def get(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` that carry ``labels``."""
        return sum(
            value
            for sample, found, value in self.samples
            if sample == name and labels.items() <= found.items()
        )


def worker_counts(metrics: Metrics, method: str) -> dict[str, float]:
    """The worker's counters for ``method`` (and the in-flight gauge) in one scrape."""
    handled = "rpcworker_handled_total"
    counts = {
        f"handled_{outcome}": metrics.get(handled, method=method, outcome=outcome)
        for outcome in ("ok", "client_error", "server_error", "expired", "cancelled")
    }
    return counts | {
        "cancels_running": metrics.get("rpcworker_cancels_total", method=method, stage="running"),
        "cancels_queued": metrics.get("rpcworker_cancels_total", method=method, stage="queued"),
        "cancels_unknown": metrics.get("rpcworker_cancels_total", stage="unknown"),
        "expired": metrics.get("rpcworker_expired_total"),
        "in_flight": metrics.get("rpcworker_in_flight"),
    }


def finished(delta: Mapping[str, float]) -> float:
    """Requests of a burst the worker is done with: handled (any outcome), skipped while queued
    after a cancel, or expired before their handler ran (counted only in ``expired``)."""
    handled = sum(value for key, value in delta.items() if key.startswith("handled_"))
    return handled + delta["cancels_queued"] + delta["expired"] - delta["handled_expired"]


async def burst(port: int, target: str, calls: int, hold: float) -> dict[str, int]:
    """``calls`` callers at once, each sending one request and disconnecting ``hold`` s later.

    Returns how many left as planned (``left``), got an answer or a closed connection first,
    or could not connect.
    """
    request = (f"POST {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\n\r\n").encode()

    async def one() -> str:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return "failed"
        try:
            writer.write(request)
            async with asyncio.timeout(hold):
                return "answered" if await reader.read(1) else "closed"
        except TimeoutError:
            return "left"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    outcomes = await asyncio.gather(*(one() for _ in range(calls)))
    return {kind: outcomes.count(kind) for kind in ("left", "answered", "closed", "failed")}


class Bench:
    """Runs bursts on a `CancelStack` and keeps what each cost."""

    def __init__(self, stack: CancelStack, runner: asyncio.Runner, plan: Plan) -> None:
        self.stack = stack
        self.runner = runner
        self.plan = plan
        pids = stack.pids
        self.meter = CpuMeter(
            {
                "worker": pids["worker"],
                "gateway_on": pids["gateway"],
                "gateway_off": pids["gateway-off"],
                "client": os.getpid(),
            }
            | ({"broker": pids["broker"]} if "broker" in pids else {})
        )

    def wait_for_catalog(self) -> None:
        """Until the ``on`` gateway serves both methods from the catalog (it sends no cancel before)."""
        limit = time.monotonic() + CATALOG_SECONDS
        while Metrics(self.stack.ports["on"]).get("rpcgw_catalog_methods") < len(KINDS):
            if time.monotonic() > limit:
                raise StackError("the on gateway has not read the worker's catalog entry")
            time.sleep(POLL_SECONDS)

    def idle(self) -> dict[str, float]:
        """Cores each process uses with no request, while the worker's /metrics is polled as in a drain."""
        before, began = self.meter.sample(), time.monotonic()
        while time.monotonic() - began < self.plan.idle_seconds:
            Metrics(self.stack.worker_port)
            time.sleep(POLL_SECONDS)
        return CpuMeter.utilisation(before, self.meter.sample(), time.monotonic() - began)

    def run(self, kind: str, arm: str, chunks: int) -> dict[str, Any]:
        """One burst of ``kind`` through the ``arm`` gateway, until the worker is done with it."""
        method, calls = KINDS[kind], self.plan.calls
        worker, gateway = self.stack.worker_port, self.stack.ports[arm]
        counts = worker_counts(Metrics(worker), method)
        sent = Metrics(gateway).get("rpcgw_cancels_total")
        before, began = self.meter.sample(), time.monotonic()
        callers = self.runner.run(
            burst(gateway, f"/rpc/{method}?chunks={chunks}", calls, self.plan.hold_ms / 1000)
        )
        limit = began + DRAIN_SLACK + DRAIN_FACTOR * calls * chunks * 0.001
        applied: float | None = None
        slowest = 0.0
        while True:
            asked = time.monotonic()
            scrape = worker_counts(Metrics(worker), method)
            slowest = max(slowest, time.monotonic() - asked)
            delta = {key: scrape[key] - counts[key] for key in counts}
            if applied is None and delta["cancels_running"] + delta["cancels_queued"] >= calls:
                applied = time.monotonic() - began
            if finished(delta) >= calls and scrape["in_flight"] == 0:
                break
            if time.monotonic() > limit:
                raise StackError(f"{kind}/{arm}: the worker is not done with the burst: {delta}")
            self.stack.check_alive()
            time.sleep(POLL_SECONDS)
        drained = time.monotonic() - began
        time.sleep(SETTLE_SECONDS)
        after, window = self.meter.sample(), time.monotonic() - began
        delta = {key: value - counts[key] for key, value in worker_counts(Metrics(worker), method).items()}
        used = {name: round(after.seconds[name] - before.seconds[name], 3) for name in after.seconds}
        return {
            "kind": kind,
            "arm": arm,
            "calls": calls,
            "chunks": chunks,
            "callers": callers,
            "drain_seconds": round(drained, 3),
            "cancels_applied_seconds": None if applied is None else round(applied, 3),
            "slowest_scrape_seconds": round(slowest, 3),
            "window_seconds": round(window, 3),
            "cpu_seconds": used,
            "gateway_cancels_sent": int(Metrics(gateway).get("rpcgw_cancels_total") - sent),
            "worker": {key: int(value) for key, value in delta.items() if key != "in_flight"},
        }

    def rounds(self, kinds: list[str], log: Callable[[str], None]) -> list[dict[str, Any]]:
        """Warm-up (one chunk per call), then the measured bursts, arms alternating in order."""
        for kind in kinds if self.plan.warmup else ():
            for arm in ARMS:
                self.run(kind, arm, 1)
        bursts = []
        for number in range(self.plan.rounds):
            for kind in kinds:
                for arm in ARMS if number % 2 else reversed(ARMS):
                    result = {"round": number + 1, **self.run(kind, arm, self.plan.chunks)}
                    log(
                        f"round {number + 1} {kind}/{arm}: worker {result['cpu_seconds']['worker']} CPU-s, "
                        f"drained in {result['drain_seconds']} s, worker {result['worker']}"
                    )
                    bursts.append(result)
        return bursts


def summarise(bursts: list[dict[str, Any]], idle: dict[str, float], kinds: list[str]) -> dict[str, Any]:
    """Medians per kind and arm, the off/on ratio of worker CPU (of medians and per round)."""
    figures: dict[str, Any] = {}
    for kind in kinds:
        arms: dict[str, Any] = {}
        for arm in ARMS:
            rows = [row for row in bursts if row["kind"] == kind and row["arm"] == arm]
            worker = [row["cpu_seconds"]["worker"] for row in rows]
            above = [
                row["cpu_seconds"]["worker"] - idle.get("worker", 0.0) * row["window_seconds"] for row in rows
            ]
            gateway = [row["cpu_seconds"][f"gateway_{arm}"] for row in rows]
            arms[arm] = {
                "rounds": len(rows),
                "worker_cpu_seconds": _median(worker),
                "worker_cpu_seconds_each": worker,
                "worker_cpu_above_idle": _median(above),
                "worker_cpu_ms_per_call": _median(
                    [1000 * w / row["calls"] for w, row in zip(worker, rows, strict=True)]
                ),
                "gateway_cpu_seconds": _median(gateway),
                "broker_cpu_seconds": _median([row["cpu_seconds"].get("broker", 0.0) for row in rows]),
                "drain_seconds": _median([row["drain_seconds"] for row in rows]),
                "cancels_applied_seconds": _median(
                    [
                        row["cancels_applied_seconds"]
                        for row in rows
                        if row["cancels_applied_seconds"] is not None
                    ]
                ),
                "slowest_scrape_seconds": _median([row["slowest_scrape_seconds"] for row in rows]),
                "completed": _median([row["worker"]["handled_ok"] for row in rows]),
                "cancelled_running": _median([row["worker"]["handled_cancelled"] for row in rows]),
                "skipped_queued": _median([row["worker"]["cancels_queued"] for row in rows]),
                "gateway_cancels_sent": _median([row["gateway_cancels_sent"] for row in rows]),
            }
        on, off = arms["on"]["worker_cpu_seconds_each"], arms["off"]["worker_cpu_seconds_each"]
        ratio = _ratio(arms["off"]["worker_cpu_seconds"], arms["on"]["worker_cpu_seconds"])
        figures[kind] = {
            **arms,
            "ratio_off_on": ratio,
            "ratio_off_on_per_round": [_ratio(b, a) for a, b in zip(on, off, strict=True)],
            "saved_fraction": None if not ratio else round(1 - 1 / ratio, 4),
        }
    return figures


def checks(bursts: list[dict[str, Any]]) -> dict[str, bool]:
    """Whether the A/B was what it claims: only the ``on`` arm cancelled, every caller left early."""
    on = [row for row in bursts if row["arm"] == "on"]
    off = [row for row in bursts if row["arm"] == "off"]
    return {
        "off_arm_sent_no_cancels": all(row["gateway_cancels_sent"] == 0 for row in off),
        "off_arm_worker_saw_no_cancels": all(
            row["worker"]["cancels_running"] + row["worker"]["cancels_queued"] == 0 for row in off
        ),
        "off_arm_completed_every_call": all(row["worker"]["handled_ok"] == row["calls"] for row in off),
        "on_arm_sent_a_cancel_per_call": all(row["gateway_cancels_sent"] == row["calls"] for row in on),
        "every_caller_left_before_an_answer": all(row["callers"]["left"] == row["calls"] for row in bursts),
        "no_request_expired": all(row["worker"]["expired"] == 0 for row in bursts),
    }


def markdown(document: dict[str, Any]) -> str:
    """The human summary: the setup, medians per kind and arm, the ratio, every burst."""
    meta, setup, figures = document["meta"], document["setup"], document["figures"]
    lines = [
        f"# Cancellation: worker CPU saved when callers leave ({meta['plan']})",
        "",
        f"Run {meta['started']}, commit `{meta['commit']}`, Kafka {meta['kafka']}, "
        f"{meta['machine']['cores']} cores; load average {meta['load_before']} before, "
        f"{meta['load_after']} after.",
        f"Command: `{meta['command']}`.",
        "",
        f"Each burst: {setup['calls']} callers at once, each sending one request and disconnecting "
        f"{setup['hold_ms']:g} ms later; each handler, left alone, runs {setup['chunks']} chunks of "
        f"pure-Python CPU ({setup['chunk_ms']:g} ms each in the bench process). `on`: the gateway reads "
        "the catalog (`cancel: true`) and sends a cancel record per disconnect; `off`: "
        '`GATEWAY_CATALOG_TOPIC=""`, no cancel records. Same worker process, same handler code, '
        f"deadline {setup['deadline_seconds']} s (no request expires); worker environment "
        f"{setup['worker_env'] or 'as shipped (64 handlers at once, 64 threads)'}. Worker CPU from "
        f"the first connect until it is done with every request, plus {SETTLE_SECONDS:g} s. Idle worker: "
        f"{document['idle_cores'].get('worker', 0):g} cores (polled as in a drain).",
        "",
        "| handler | arm | rounds | worker CPU-s | above idle | worker CPU-ms/call | drain s "
        "| cancels applied by s | slowest /metrics s | completed | cancelled running | skipped queued "
        "| cancels sent | gateway CPU-s | broker CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, kind_figures in figures.items():
        for arm in ARMS:
            row = kind_figures[arm]
            cells = [
                f"`{KINDS[kind]}` ({kind})",
                arm,
                row["rounds"],
                row["worker_cpu_seconds"],
                row["worker_cpu_above_idle"],
                row["worker_cpu_ms_per_call"],
                row["drain_seconds"],
                row["cancels_applied_seconds"] if arm == "on" else "",
                row["slowest_scrape_seconds"],
                row["completed"],
                row["cancelled_running"],
                row["skipped_queued"],
                row["gateway_cancels_sent"],
                row["gateway_cpu_seconds"],
                row["broker_cpu_seconds"],
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += ["", "Medians over rounds. Worker CPU off / on:", ""]
    for kind, kind_figures in figures.items():
        saved = kind_figures["saved_fraction"]
        lines.append(
            f"- {kind}: **{kind_figures['ratio_off_on']} times** "
            f"(per round {kind_figures['ratio_off_on_per_round']}); "
            f"cancellation saved {'n/a' if saved is None else f'{100 * saved:.1f} %'} of the worker's CPU."
        )
    lines += ["", f"Checks: {document['checks']}.", "", "## Every burst, in run order", ""]
    lines += [
        "| round | handler | arm | worker CPU-s | drain s | cancels applied by s | slowest /metrics s "
        "| completed | cancelled running | skipped queued | cancels after the end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["bursts"]:
        worker = row["worker"]
        cells = [
            row["round"],
            row["kind"],
            row["arm"],
            row["cpu_seconds"]["worker"],
            row["drain_seconds"],
            row["cancels_applied_seconds"] or "",
            row["slowest_scrape_seconds"],
            worker["handled_ok"],
            worker["handled_cancelled"],
            worker["cancels_queued"],
            worker["cancels_unknown"],
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += [
        "",
        '"cancels applied by": when the worker\'s /metrics first counted a cancel for every call '
        f'(polled every {POLL_SECONDS:g} s, from the first connect); "slowest /metrics": the longest '
        "the worker's event loop, which also reads the cancel records, took to answer a poll.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run, write ``<out>/<name>.json`` and ``.md``; exit status 1 if a check failed."""
    args = _parser().parse_args(argv)
    base = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    plan = Plan(
        base.name,
        calls=args.calls or base.calls,
        chunks=args.chunks or base.chunks,
        hold_ms=args.hold_ms or base.hold_ms,
        rounds=args.rounds or base.rounds,
        idle_seconds=base.idle_seconds,
        warmup=base.warmup,
    )
    kinds = args.kinds.split(",")
    if any(kind not in KINDS for kind in kinds):
        raise SystemExit(f"--kinds takes {', '.join(KINDS)}")
    chunk = chunk_seconds()
    worker_env = environment(args.worker_env)
    start = RunStart.now()
    _log(f"plan {plan}, a chunk takes {chunk * 1000:.2f} ms here, load average {start.load_before}")
    stack = CancelStack(worker_env)
    with stack, asyncio.Runner(loop_factory=new_loop) as runner:
        _log(f"stack up: Kafka {stack.kafka.bootstrap_servers}, pids {stack.pids}")
        bench = Bench(stack, runner, plan)
        bench.wait_for_catalog()
        idle = bench.idle()
        bursts = bench.rounds(kinds, _log)
        kafka_version = str(stack.kafka.version)
    document: dict[str, Any] = {
        "meta": {
            "started": start.started,
            "plan": plan.name,
            "command": " ".join(
                ["python -m bench.cancellation", *(argv if argv is not None else sys.argv[1:])]
            ),
            "commit": start.commit,
            "kafka": kafka_version,
            "load_before": start.load_before,
            "load_after": load_average(),
            "machine": facts(),
        },
        "setup": {
            **asdict(plan),
            "chunk_ms": round(chunk * 1000, 3),
            "deadline_seconds": DEADLINE_SECONDS,
            "poll_seconds": POLL_SECONDS,
            "worker_env": worker_env,
            "kinds": kinds,
        },
        "idle_cores": idle,
        "figures": summarise(bursts, idle, kinds),
        "checks": checks(bursts),
        "bursts": bursts,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or ("cancellation" if plan.name == "full" else f"cancellation-{plan.name}")
    (out / f"{name}.json").write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    (out / f"{name}.md").write_text(markdown(document))
    _log(f"wrote {out / name}.json and .md")
    for kind, figure in document["figures"].items():
        _log(
            f"{kind}: worker CPU-s on {figure['on']['worker_cpu_seconds']}, "
            f"off {figure['off']['worker_cpu_seconds']}, off/on {figure['ratio_off_on']}"
        )
    _log(f"checks {document['checks']}")
    return 0 if all(document["checks"].values()) else 1


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator > 0 else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cancellation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="50 calls of 40 chunks, 1 round (under a minute)")
    size.add_argument(
        "--smoke", action="store_true", help="12 calls of 120 chunks, 1 round, no warm-up: proves the harness"
    )
    parser.add_argument("--calls", type=int, metavar="N", help="callers per burst (default 200)")
    parser.add_argument(
        "--chunks", type=int, metavar="C", help="~1 ms CPU chunks per handler left alone (default 100)"
    )
    parser.add_argument(
        "--hold-ms", type=float, metavar="MS", help="caller's wait before it leaves (default 100)"
    )
    parser.add_argument("--rounds", type=int, metavar="R", help="bursts per handler kind and arm (default 3)")
    parser.add_argument(
        "--kinds", default="thread,async", help="handler kinds, comma-separated: thread, async"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra worker environment (repeatable)",
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"), help="output directory")
    parser.add_argument("--name", help="file name stem (default cancellation, or cancellation-quick/-smoke)")
    return parser


def _log(text: str) -> None:
    print(f"[bench.cancellation {time.monotonic() - _STARTED:5.1f} s] {text}", file=sys.stderr, flush=True)


_STARTED = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
