"""The streaming and cancellation examples of docs/WORKERS.md register and run as documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson

from kafkarpc.protocol import Reply
from tests.fakekafka import FakeKafka
from tests.workers.conftest import request, send, serving
from workers import Cancellation, HandlerRegistry

DOC = Path(__file__).resolve().parents[2] / "docs" / "WORKERS.md"


def section(title: str) -> str:
    """The text of one ``## title`` section."""
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def registered(title: str) -> HandlerRegistry:
    """A registry with the handlers of a section's Python examples."""
    registry = HandlerRegistry()
    for block in re.findall(r"```python\n(.*?)```", section(title), flags=re.S):
        namespace: dict[str, object] = {"__name__": "docs_workers", "registry": registry}
        exec(compile(block, str(DOC), "exec"), namespace)
    return registry


async def test_the_streaming_examples_stream(broker: FakeKafka) -> None:
    registry = registered("Streamed replies")
    assert [(r.method, r.streaming) for r in registry] == [("countdown", True), ("squares", True)]
    async with serving(broker, registry) as h:
        countdown = request("countdown", b'{"start": 0}')  # one part, no wait
        squares = dataclasses.replace(request("squares"), query="n=3")
        send(broker, countdown, partition=0)
        send(broker, squares, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        for req, parts in [
            (countdown, [{"left": 0}]),
            (squares, [{"i": 0, "square": 0}, {"i": 1, "square": 1}, {"i": 2, "square": 4}]),
        ]:
            replies = [Reply.from_record(m.value(), m.headers()) for m in h.stream(req.correlation_id)]
            assert [orjson.loads(r.body) for r in replies[:-1]] == parts
            assert replies[-1].final


def test_the_cancellation_example_stops_once_cancelled() -> None:
    registration = registered("Cancellation").get("reindex")
    assert registration is not None
    cancellation = Cancellation()
    cancellation.set()
    assert registration.function(cancellation) == {"batches": 0}
