"""``python -m bench``: the whole benchmark (``--quick`` for a short one, ``--soak N`` to add a soak).

Starts a broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names one), the worker, the gateway and
the B1 echo server, runs `bench.suite.Suite`, evaluates the targets and writes JSON,
Markdown and a PNG plot under ``--out`` (default docs/benchmarks). Every process it
started is stopped before it exits. Gateway and worker take configuration from the
environment as in production (``KAFKA_PROPERTIES``, ``GATEWAY_*``, ``WORKER_*``), so an A/B
experiment is two runs with different environments.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import confluent_kafka

from . import otlpsink, report
from .machine import RunStart, load_average
from .profile import PROFILES, Profile
from .stack import REPO_ROOT, ServerOptions, Stack, add_environment_option, environment
from .suite import Suite
from .targets import evaluate
from .tokens import jwt_options


def main(argv: list[str] | None = None) -> int:
    """Run, write the report, print where it is; exit status 0 unless the run failed."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        return _run(args, Path(directory))


def _run(args: argparse.Namespace, directory: Path) -> int:
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    gateway_env, request_headers = jwt_options(directory) if args.jwt else ({}, {})
    options = ServerOptions(
        loop=args.loop,
        http=args.http,
        gateway_env={**gateway_env, **environment(args.gateway_env)},
        worker_env={
            **({"WORKER_LOOP": args.worker_loop} if args.worker_loop else {}),
            **environment(args.worker_env),
        },
        request_headers=request_headers,
    )
    start = RunStart.now()
    _log(f"profile {profile.name}, load average {start.load_before}")
    with contextlib.ExitStack() as tracing:
        exported: dict[str, int] | None = None
        if args.tracing:
            endpoint, exported = tracing.enter_context(otlpsink.running(directory))
            for env in (options.gateway_env, options.worker_env):
                env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        results, kafka_version = _measure(options, profile, args)
    document: dict[str, Any] = {
        "meta": {
            "started": start.started,
            "profile": profile.name,
            "commit": start.commit,
            "kafka": kafka_version,
            "librdkafka": confluent_kafka.libversion()[0],
            "confluent_kafka": confluent_kafka.version()[0],
            "python": sys.version.split()[0],
            "load_before": start.load_before,
            "load_after": load_average(),
            "kafka_properties": os.environ.get("KAFKA_PROPERTIES", ""),
            "options": {
                "loop": options.loop,
                "http": options.http,
                "worker_loop": options.worker_env.get("WORKER_LOOP", "auto"),
                "env": {**options.gateway_env, **options.worker_env},
                "jwt": args.jwt,
                "tracing": args.tracing,
            },
            "exported_spans": exported,
            "label": args.label,
        },
    }
    figures, targets = evaluate(results)
    document |= {
        "profile": dataclasses.asdict(profile),
        "figures": figures,
        "targets": targets,
        "results": results,
    }
    for path in report.write(document, Path(args.out), args.name):
        _log(f"wrote {path}")
    for row in targets:
        _log(f"  {row['target']}: {row['measured']} (limit {row['limit']}) met={row['met']}")
    if exported is not None:
        _log(f"spans exported to the sink: {exported}")
    return 0


def _measure(
    options: ServerOptions, profile: Profile, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    """The suite's results and the broker's version."""
    with Stack(options) as stack:
        _log(f"stack up: Kafka {stack.kafka.bootstrap_servers}, pids {stack.pids}")
        suite = Suite(stack, profile, _log)
        try:
            results = suite.run(args.soak, args.soak_rate)
        finally:
            suite.close()
        return results, str(stack.kafka.version)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about 4 minutes instead of about 12")
    size.add_argument("--smoke", action="store_true", help="seconds; proves the harness, figures meaningless")
    parser.add_argument("--soak", type=int, metavar="N", help="add a soak of N requests (e.g. 1000000)")
    parser.add_argument(
        "--soak-rate",
        type=float,
        metavar="R",
        help="soak rate per second (default: half the sustained rate, >= 300)",
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"), help="output directory")
    parser.add_argument("--name", default="results", help="file name stem of the outputs")
    parser.add_argument("--label", default="", help="free text recorded in the report (the experiment)")
    parser.add_argument(
        "--jwt", action="store_true", help="GATEWAY_AUTH=jwt, every request with one RS256 bearer token"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="gateway and worker trace every request (sampler 1.0) to a counting OTLP sink",
    )
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"], help="gateway event loop")
    parser.add_argument(
        "--http", default="httptools", choices=["httptools", "h11"], help="gateway HTTP parser"
    )
    parser.add_argument(
        "--worker-loop",
        choices=["asyncio", "uvloop"],
        help="worker event loop (WORKER_LOOP; default: as shipped)",
    )
    add_environment_option(parser, "--gateway-env", "extra environment for the gateway only (repeatable)")
    add_environment_option(parser, "--worker-env", "extra environment for the worker only (repeatable)")
    return parser


def _log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
