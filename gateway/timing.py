"""Stage timings of one request, from its ``rpc-timing`` stamps to a ``Server-Timing`` header.

With ``GATEWAY_TIMING`` on, a request is stamped on its way (epoch microseconds; one
host's clock when gateway and worker share a machine, NTP-close otherwise):

    http_in        the endpoint received the request head (gateway)
    produced       just before ``produce()`` (gateway)
    worker_fetched the worker's consumer thread got the record's batch (worker, optional)
    worker_in      the worker started on the record (worker)
    worker_out     the worker built the reply (worker)
    reply_fetched  the reply consumer thread got the record's batch (gateway)
    reply_routed   the event loop matched the reply to its request (gateway)
    http_out       the response is about to be sent (gateway, not on the wire)

and the answer carries the W3C ``Server-Timing`` header with the segments between them.
"""

from __future__ import annotations

from kafkarpc import stamps

SEGMENTS = (
    ("gateway", "http_in", "produced"),
    ("request-hop", "produced", "worker_fetched"),
    ("worker-queue", "worker_fetched", "worker_in"),
    ("worker", "worker_in", "worker_out"),
    ("reply-hop", "worker_out", "reply_fetched"),
    ("handoff", "reply_fetched", "reply_routed"),
    ("respond", "reply_routed", "http_out"),
    ("total", "http_in", "http_out"),
)
"""``Server-Timing`` metric names and the stamps each one spans."""
STAND_INS = {"worker_fetched": "worker_in"}
"""A stamp that ends a segment in place of a missing one: a worker that does not stamp
``worker_fetched`` still gets its ``request-hop``, ending where it started on the record
(the ``worker-queue`` is then left out, not reported as zero)."""


def server_timing(timing: str, http_out: float) -> str:
    """The ``Server-Timing`` value for a reply's stamps, ending at ``http_out`` (epoch seconds).

    Segments whose stamps are missing (a worker that does not stamp, a clock that went
    backwards) are left out rather than guessed.
    """
    found = stamps.stamps(timing)
    found["http_out"] = int(http_out * 1_000_000)
    parts = []
    for name, start, stamped_end in SEGMENTS:
        end = stamped_end if stamped_end in found else STAND_INS.get(stamped_end, stamped_end)
        if start in found and end in found and found[end] >= found[start]:
            parts.append(f"{name};dur={(found[end] - found[start]) / 1000:.3f}")
    return ", ".join(parts)
