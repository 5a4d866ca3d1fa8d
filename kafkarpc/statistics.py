"""Consumer lag from librdkafka's statistics document (``statistics.interval.ms``, ``stats_cb``).

The statistics callback runs on the thread that polls the client, at the configured
interval, so the lag gauges cost the fetch path nothing.
"""

from __future__ import annotations

from typing import Literal

import orjson

# librdkafka's "internal unassigned" partition.
_UNASSIGNED = "-1"


def consumer_lag(statistics: str | bytes, *, since: Literal["committed", "delivered"] = "committed") -> int:
    """Records behind the end of the log, summed over the actively fetched partitions.

    ``committed``: librdkafka's own ``consumer_lag``, counted from the committed offset (what
    a group member's successor would re-read). ``delivered``: counted from ``app_offset``,
    for a reader that never commits (what it has not yet handed to the application).
    The end is the last stable offset, as read_committed consumers see it. Partitions
    where the lag is unknown (nothing delivered or committed yet) count 0.
    """
    document = orjson.loads(statistics)
    total = 0
    for topic in document.get("topics", {}).values():
        for number, partition in topic.get("partitions", {}).items():
            if number == _UNASSIGNED or partition.get("fetch_state") != "active":
                continue
            if since == "committed":
                lag = partition.get("consumer_lag", -1)
            else:
                end, delivered = partition.get("ls_offset", -1), partition.get("app_offset", -1)
                lag = end - delivered if end >= 0 and delivered >= 0 else -1
            total += max(lag, 0)
    return int(total)
