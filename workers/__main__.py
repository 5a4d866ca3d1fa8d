"""``python -m workers --handlers module:object`` (console script ``kafka-rpc-worker``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from kafkarpc import heap
from kafkarpc.connection import KafkaSettings
from kafkarpc.logs import configure_logging
from kafkarpc.tracing import Tracing
from workers.errors import RegistryError
from workers.registry import HandlerRegistry
from workers.runtime import Worker
from workers.settings import WorkerSettings

SERVICE_NAME = "kafka-rpc-worker"
"""The traces' ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise."""


def load_registry(specs: Sequence[str]) -> HandlerRegistry:
    """Import ``module:attribute`` specs and merge their registries.

    Raises:
        RegistryError: a spec is malformed, cannot be imported, is not a `HandlerRegistry`,
            or two registries define the same method.
    """
    if not specs:
        raise RegistryError("no handlers: pass --handlers module:object or set WORKER_HANDLERS")
    merged = HandlerRegistry()
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise RegistryError(f"{spec!r} is not module:object")
        try:
            target: object = importlib.import_module(module_name)
            for name in attribute.split("."):
                target = getattr(target, name)
        except (ImportError, AttributeError) as exc:
            raise RegistryError(f"cannot load {spec!r}: {exc}") from exc
        if not isinstance(target, HandlerRegistry):
            raise RegistryError(f"{spec!r} is a {type(target).__name__}, not a HandlerRegistry")
        merged.include(target)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build settings once, run the worker; returns the exit code."""
    parser = argparse.ArgumentParser(prog="kafka-rpc-worker", description=__doc__)
    parser.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE:OBJECT",
        help="a HandlerRegistry to serve; repeatable or comma-separated (default: $WORKER_HANDLERS)",
    )
    args = parser.parse_args(argv)
    specs = tuple(spec.strip() for value in args.handlers for spec in value.split(",") if spec.strip())
    settings = WorkerSettings(handlers=specs) if specs else WorkerSettings()
    configure_logging(settings.log_level, settings.log_format)
    # Like uvicorn's --app-dir ".": handler modules next to where the worker is started.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        registry = load_registry(settings.handlers)
    except RegistryError as exc:
        parser.error(str(exc))
    tracing = Tracing.from_environment(SERVICE_NAME)
    tracer = None
    if tracing is not None:
        tracing.install()  # handlers' own spans join the request's trace
        tracer = tracing.tracer
    heap.freeze()  # full collections under load skip what start-up built (kafkarpc.heap)
    code = 1
    try:
        code = Worker(settings, KafkaSettings(), registry, tracer=tracer).run()
    finally:
        if tracing is not None:
            tracing.shutdown()  # the last spans (bounded), before the exit below skips every atexit hook
    # Everything is committed and flushed. A sync handler still stuck in the thread pool
    # would keep the interpreter from exiting (it joins pool threads), so leave now.
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
