"""Waiting for Kafka: calls retried with capped backoff until they work or the caller gives up.

Start-up meets passing errors (brokers still starting, a fresh topic without a leader yet),
so the first retries are expected and logged at INFO; once `QUIET_SECONDS` have passed
they are logged at WARNING, because by then something is wrong. Never used for producing
a record: a produce that timed out may have been written (RELIABILITY.md §1.2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, wait_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")

QUIET_SECONDS = 10.0
"""Retries within this long of the first attempt are expected (INFO); later ones are warnings."""
_WAIT = wait_exponential(multiplier=0.05, max=2.0)


def retrying(stopped: Callable[[], bool]) -> Retrying:
    """A blocking retry loop (``for attempt in retrying(...): with attempt: ...``).

    It gives up, re-raising the last error, once ``stopped()`` is true.
    """
    return Retrying(
        retry=retry_if_exception_type(Exception),
        wait=_WAIT,
        stop=lambda _: stopped(),
        before_sleep=_log_retry,
        reraise=True,
    )


async def in_thread_until_it_works(call: Callable[[], T]) -> T:
    """Run a blocking call in a thread until it succeeds; cancelling the caller ends the retries."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception), wait=_WAIT, before_sleep=_log_retry, reraise=True
    ):
        with attempt:
            return await asyncio.to_thread(call)
    raise AssertionError("unreachable: AsyncRetrying either returns or raises")


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    level = logging.INFO if (state.seconds_since_start or 0) < QUIET_SECONDS else logging.WARNING
    log.log(
        level,
        "Kafka not ready, retrying",
        extra={"attempt": state.attempt_number, "error": str(outcome.exception()) if outcome else None},
    )
