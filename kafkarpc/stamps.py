"""``rpc-timing`` stamps: ``name=<epoch microseconds>`` pairs each hop appends, comma-separated.

Optional diagnostics of the wire contract (docs/PROTOCOL.md, "Timing"): the gateway asks for
them with ``GATEWAY_TIMING``, workers that support them copy and extend them onto the reply,
and readers skip pairs they do not understand.
"""

from __future__ import annotations

import time

MAX_STAMP_DIGITS = 20


def stamp(timing: str, name: str, at: float | None = None) -> str:
    """``timing`` with ``name=<epoch µs>`` appended (``at`` in epoch seconds, default now)."""
    micros = int((time.time() if at is None else at) * 1_000_000)
    return f"{timing},{name}={micros}" if timing else f"{name}={micros}"


def stamps(timing: str) -> dict[str, int]:
    """The ``name -> epoch µs`` pairs of a timing value; malformed pairs are ignored."""
    found: dict[str, int] = {}
    for pair in timing.split(","):
        name, _, micros = pair.partition("=")
        # 20 digits hold any epoch microsecond; a longer number is garbage, not a time.
        if name and len(micros) <= MAX_STAMP_DIGITS and micros.isascii() and micros.isdigit():
            found[name.strip()] = int(micros)
    return found
