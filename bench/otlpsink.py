"""``python -m bench.otlpsink --port N --stats FILE``: an OTLP/HTTP trace endpoint that counts and discards.

``python -m bench --tracing`` (`running`) points the gateway and the worker at it, so that a run measures
what tracing costs *them* (making spans, batching, encoding, sending) and not a tracing backend
sharing their two cores, which in production runs elsewhere. It decodes each export to count
spans, so the report can say how many were sent (and the SDK's queue dropped none, or some).
On SIGTERM it writes ``{"exports": n, "spans": n, "bytes": n}`` to ``--stats``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import Child


class Counts:
    """What arrived, guarded for the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exports = self.spans = self.bytes = 0

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self.lock:
            self.exports += 1
            self.spans += spans
            self.bytes += len(body)


def handler(counts: Counts) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler that counts each ``POST /v1/traces`` and answers an empty success."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

        def do_GET(self) -> None:
            self.send_response(200)  # readiness
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            counts.add(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would be noise

    return Handler


@contextlib.contextmanager
def running(directory: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A sink in its own process: ``OTEL_EXPORTER_OTLP_ENDPOINT`` for the block, and the counts,
    filled in once it has stopped."""
    port, stats = claim(1)[0], directory / "otlpsink.json"
    command = [sys.executable, "-m", "bench.otlpsink", "--port", str(port), "--stats", str(stats)]
    child = Child.spawn("otlpsink", command, None, directory / "otlpsink.log")
    counts: dict[str, int] = {}
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/", 30)
        yield f"http://127.0.0.1:{port}", counts
    finally:
        child.stop(10)
        if stats.exists():
            counts.update(orjson.loads(stats.read_bytes()))


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM, then write the counts."""
    parser = argparse.ArgumentParser(prog="python -m bench.otlpsink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    counts = Counts()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(counts))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    with counts.lock:
        found = {"exports": counts.exports, "spans": counts.spans, "bytes": counts.bytes}
    args.stats.write_bytes(orjson.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
