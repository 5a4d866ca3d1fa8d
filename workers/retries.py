"""`RetryPolicy`: how a handler that raised `TransientError` is tried again (tenacity).

Exponential backoff with jitter, at most ``WORKER_RETRY_ATTEMPTS`` attempts, and never an
attempt that would start past the request's deadline. Retrying is rare, so the first
attempt runs directly and tenacity is set up only after it failed (built for every
request it cost ~10 % of the worker's CPU); it replays that failure as its own first
attempt, so counting and backoff are exactly those of a retry loop around every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from workers.errors import TransientError

if TYPE_CHECKING:
    from prometheus_client import Counter

T = TypeVar("T")


class RetryPolicy:
    """Runs an attempt, retrying `TransientError` within the attempts and the deadline."""

    def __init__(
        self,
        *,
        attempts: int,
        backoff: float,
        backoff_max: float,
        retries: Counter,
        clock: Callable[[], float],
    ) -> None:
        self._attempts = attempts
        self._retries = retries
        self._clock = clock
        # Jitter, so retries of many requests failing together do not synchronise.
        self._wait = wait_exponential(multiplier=backoff, max=backoff_max) + wait_random(0, backoff)

    async def run(self, attempt: Callable[[], Awaitable[T]], method: str, deadline: float) -> T:
        """``attempt()``'s result; its last `TransientError` (or any other error) is raised.

        ``deadline`` is in epoch seconds; ``method`` labels the retry counter.
        """
        try:
            return await attempt()
        except TransientError as exc:
            first_failure = exc
        replayed = False

        async def again() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return await attempt()

        def stop(state: RetryCallState) -> bool:
            # Out of attempts, or the next attempt would start past the deadline.
            return (
                state.attempt_number >= self._attempts
                or self._clock() + (state.upcoming_sleep or 0) >= deadline
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=lambda _: self._retries.labels(method).inc(),
            reraise=True,
        )
        return await retrying(again)
