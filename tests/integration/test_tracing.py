"""One HTTP call, one trace: the real gateway and worker processes, a real broker, a real Jaeger.

Jaeger v2 (tools/jaeger.sh builds it from the Go module proxy) receives OTLP/HTTP from both
processes, configured only by the standard ``OTEL_*`` variables, and the test reads each trace
back through Jaeger's query API (v3): the spans of both processes in the right parent/child
order, and for a 504 and a worker 5xx the failed span that says why.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from devstack.jaeger import Jaeger, attributes
from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import Child

from .harness import Topics

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 60.0
EXPORTED_WITHIN = 15.0
"""Spans leave each process in batches (every 50 ms here) and Jaeger stores them a moment later."""
GATEWAY, WORKER = "kafka-rpc-gateway", "kafka-rpc-worker"
ERROR = 2  # STATUS_CODE_ERROR in the OTLP JSON encoding


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with Jaeger(tmp_path_factory.mktemp("jaeger") / "jaeger.log") as running:
        yield running


@pytest.fixture
def gateway(topics: Topics, jaeger: Jaeger, tmp_path: Path) -> Iterator[str]:
    """``python -m workers`` (the examples) and ``python -m gateway``, both tracing to ``jaeger``."""
    http, monitoring = claim(2)
    common = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": topics.kafka.bootstrap_servers,
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    worker = Child.spawn(
        "worker",
        [sys.executable, "-m", "workers", "--handlers", "workers.examples:registry"],
        {
            **common,
            "WORKER_GROUP_ID": f"workers-{topics.unique}",
            "WORKER_REQUEST_TOPIC": topics.requests,
            "WORKER_REPLY_TOPICS": topics.replies,
            "WORKER_DEAD_LETTER_TOPIC": f"{topics.requests}.dlt",
            "WORKER_CATALOG_TOPIC": topics.catalog,
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(monitoring),
        },
        tmp_path / "worker.log",
        cwd=ROOT,
    )
    server = Child.spawn(
        "gateway",
        [sys.executable, "-m", "gateway"],
        {
            **common,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(http),
            "GATEWAY_AUTH": "none",
            "GATEWAY_REQUEST_TOPIC": topics.requests,
            "GATEWAY_REPLY_TOPIC": topics.replies,
            "GATEWAY_CATALOG_TOPIC": topics.catalog,
        },
        tmp_path / "gateway.log",
        cwd=ROOT,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{monitoring}/readyz", READY_WITHIN, lambda: _alive(worker))
        wait_until_ready(f"http://127.0.0.1:{http}/readyz", READY_WITHIN, lambda: _alive(server))
        _wait_for_catalog(f"http://127.0.0.1:{http}", "echo")
        yield f"http://127.0.0.1:{http}"
    finally:
        server.stop(15)
        worker.stop(15)


def _alive(child: Child) -> None:
    if child.process.poll() is not None:
        raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")


def _wait_for_catalog(url: str, method: str) -> None:
    """Until the gateway's catalog lists ``method`` (so the call is not refused as unknown)."""
    for attempt in Retrying(stop=stop_after_delay(READY_WITHIN), wait=wait_fixed(0.1), reraise=True):
        with attempt:
            paths = httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
            assert f"/rpc/{method}" in paths or any(method in str(item) for item in paths.values())


def call(url: str, method: str, body: dict[str, Any], **headers: str) -> tuple[httpx.Response, str]:
    """POST ``body`` to ``method`` in a trace of the test's own; the response and the trace id."""
    trace_id = secrets.token_hex(16)
    headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = httpx.post(f"{url}/rpc/{method}", content=orjson.dumps(body), headers=headers, timeout=30)
    return response, trace_id


def exported(jaeger: Jaeger, trace_id: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """The trace's spans by name, once every one of ``names`` has reached Jaeger."""
    retrying = Retrying(
        stop=stop_after_delay(EXPORTED_WITHIN),
        wait=wait_fixed(0.1),
        retry=retry_if_result(lambda found: not names <= set(found)),
    )
    found: dict[str, dict[str, Any]] = retrying(
        lambda: {span["name"]: span for span in jaeger.trace(trace_id)}
    )
    return found


def child_of(span: dict[str, Any], parent: dict[str, Any]) -> bool:
    return bool(span.get("parentSpanId")) and span["parentSpanId"] == parent["spanId"]


def test_one_call_is_one_trace_from_the_http_call_to_the_handler_and_back(
    gateway: str, jaeger: Jaeger, topics: Topics
) -> None:
    response, trace_id = call(gateway, "echo", {"hello": "trace"})
    assert response.status_code == 200
    names = {
        "server": "POST /rpc/{method}",
        "request": f"send {topics.requests}",
        "process": f"process {topics.requests}",
        "handle": "handle echo",
        "reply": f"send {topics.replies}",
        "arrival": f"receive {topics.replies}",
    }
    found = exported(jaeger, trace_id, set(names.values()))
    server, request, process, handle, reply, arrival = (found[name] for name in names.values())
    # Parent and child across both processes, and each span in the process that made it.
    assert child_of(request, server)
    assert child_of(process, request)
    assert child_of(handle, process)
    assert child_of(reply, process)
    assert child_of(arrival, server)
    assert [link["spanId"] for link in arrival.get("links", [])] == [reply["spanId"]]
    assert {server["service.name"], request["service.name"], arrival["service.name"]} == {GATEWAY}
    assert {process["service.name"], handle["service.name"], reply["service.name"]} == {WORKER}
    assert int(attributes(server)["http.response.status_code"]) == 200
    assert attributes(process)["messaging.message.conversation_id"] == response.headers["x-correlation-id"]
    # In time order: the produce, the worker, the reply's arrival, all inside the HTTP call.
    start = [int(span["startTimeUnixNano"]) for span in (server, request, process, reply, arrival)]
    assert start == sorted(start)
    assert int(arrival["endTimeUnixNano"]) <= int(server["endTimeUnixNano"])


def test_a_504_is_a_trace_whose_server_span_says_why(gateway: str, jaeger: Jaeger, topics: Topics) -> None:
    response, trace_id = call(gateway, "sleep", {"seconds": 3}, prefer="wait=1")
    assert response.status_code == 504
    spans = exported(jaeger, trace_id, {"POST /rpc/{method}", "handle sleep"})
    server, handle = spans["POST /rpc/{method}"], spans["handle sleep"]
    assert server["status"]["code"] == ERROR
    assert server["status"]["message"] == "no reply within 1 s"
    assert attributes(server)["error.type"] == "timeout"
    # The worker stopped at the same deadline and sent nothing: its span says so.
    assert attributes(handle)["rpcworker.outcome"] == "no_reply"
    assert f"receive {topics.replies}" not in spans


def test_a_worker_error_is_a_trace_whose_spans_say_why(gateway: str, jaeger: Jaeger) -> None:
    response, trace_id = call(gateway, "fail", {"status": 503, "detail": "inventory is down"})
    assert response.status_code == 502
    spans = exported(jaeger, trace_id, {"POST /rpc/{method}", "handle fail"})
    server, handle = spans["POST /rpc/{method}"], spans["handle fail"]
    for span in (server, handle):
        assert span["status"]["code"] == ERROR
        assert span["status"]["message"] == "inventory is down"
    assert attributes(server)["error.type"] == "worker_error"
    assert attributes(handle)["error.type"] == "503"
