"""`bench.dispatch`: the worker's Python per record, measured in one process."""

from __future__ import annotations

import re

from bench.dispatch import measure


async def test_every_record_is_answered_with_a_reply_keyed_by_its_correlation_id() -> None:
    per_record, producer = await measure(50, 2)

    assert len(per_record) == 2
    assert all(cost > 0 for cost in per_record)
    # A reply's key is its request's correlation id; a dead letter would carry the record's (none).
    keys = [key.decode() for key in producer.keys if key is not None]
    assert len(keys) == len(producer.keys) == 100
    assert all(re.fullmatch("[0-9a-f]{32}", key) for key in keys)
    assert len(set(keys)) == 50
    assert keys[:50] == keys[50:]  # the same records, answered again in the second repetition
