"""Draw one trace from Jaeger's query API as a timeline (PNG), where no Jaeger UI is at hand.

    python -m devstack.timeline <trace id> trace.png [--jaeger http://127.0.0.1:16686]

The binary tools/jaeger.sh builds serves the query API but not the UI (its assets are built
with npm in Jaeger's release, outside the Go module), so this draws what the UI would: one
row per span in parent-before-child order, a bar from its start to its end, coloured by service,
failed spans outlined in red with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from devstack import jaeger

Span = dict[str, Any]

COLOURS = {"kafka-rpc-gateway": "#4C72B0", "kafka-rpc-worker": "#DD8452"}
ERROR_CODE = 2  # STATUS_CODE_ERROR in OTLP JSON


def ordered(spans: list[Span]) -> list[tuple[int, Span]]:
    """``(depth, span)`` with each parent before its children, siblings by start time."""
    ids = {span["spanId"] for span in spans}
    children: dict[str, list[Span]] = {}
    roots: list[Span] = []
    for span in sorted(spans, key=lambda s: int(s["startTimeUnixNano"])):
        parent = span.get("parentSpanId") or ""
        (children.setdefault(parent, []) if parent in ids else roots).append(span)
    rows: list[tuple[int, Span]] = []

    def visit(span: Span, depth: int) -> None:
        rows.append((depth, span))
        for child in children.get(span["spanId"], []):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return rows


def draw(spans: list[Span], output: Path, title: str) -> None:
    """Write the timeline of ``spans`` to ``output`` (PNG)."""
    import matplotlib  # noqa: PLC0415 - a development tool's plotting library, loaded when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = ordered(spans)
    origin = min(int(span["startTimeUnixNano"]) for span in spans)
    figure, axes = plt.subplots(figsize=(11, 0.5 * len(rows) + 1.4))
    for index, (depth, span) in enumerate(rows):
        start = (int(span["startTimeUnixNano"]) - origin) / 1e6
        length = max((int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6, 0.02)
        failed = span.get("status", {}).get("code") == ERROR_CODE
        axes.barh(
            index,
            length,
            left=start,
            color=COLOURS.get(span["service.name"], "#8C8C8C"),
            edgecolor="#C44E52" if failed else "none",
            linewidth=2,
        )
        label = f"{'  ' * depth}{span['name']}  {length:.2f} ms"
        if failed:
            label += f"  ✗ {span['status'].get('message', '')}"
        axes.text(start + length, index, f" {label}", va="center", fontsize=8)
    axes.set_yticks(range(len(rows)), [f"{span['service.name']}" for _, span in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("ms since the call started")
    axes.set_title(title, fontsize=10)
    end = max((int(span["endTimeUnixNano"]) - origin) / 1e6 for span in spans)
    axes.set_xlim(0, end * 1.9)  # room for the labels right of the bars
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Fetch a trace and draw it."""
    parser = argparse.ArgumentParser(prog="python -m devstack.timeline", description=__doc__)
    parser.add_argument("trace_id")
    parser.add_argument("output", type=Path)
    parser.add_argument("--jaeger", default="http://127.0.0.1:16686", help="Jaeger's query URL")
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.jaeger, timeout=10) as api:
        spans = jaeger.spans(api, args.trace_id)
    if not spans:
        parser.error(f"Jaeger at {args.jaeger} has no trace {args.trace_id}")
    draw(spans, args.output, f"trace {args.trace_id}: {len(spans)} spans")
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
