"""`Fetcher`: one consumer client, the one thread that calls it, batches handed to the event loop.

Threading contract:

* Only the fetch thread ever calls the client: ``setup`` (subscribe or assign), every fetch,
  the ``between_fetches`` hook, pause and resume, ``teardown`` and ``close``. Calling a
  consumer from the loop while ``consume()`` runs would deadlock confluent-kafka (the call
  holds the GIL and waits for the consuming thread), and a client closed by one thread while
  another still sets it up is used after close. One owner rules both out.
* Each fetched batch reaches the loop with ONE ``call_soon_threadsafe(on_batch, records,
  fetched_at)``. A fetch waits in ``poll()``, which returns at the first record without
  holding the GIL, then takes what is already fetched with ``consume(n, timeout=0)``:
  ``consume(n, timeout)`` alone would wait the whole timeout unless n records arrive.
* `stop` may be called from any thread; the fetch thread notices within `POLL_SECONDS`,
  runs ``teardown``, closes the client and settles `stopped` on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition

    from .clients import ConsumerClient, Message

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""Longest one fetch waits when idle (how soon `stop` and `resume` are noticed); a record ends it."""
BATCH_SIZE = 500
"""Most records handed to the loop at once."""

ClientStep = Callable[["ConsumerClient"], None]
"""Something the fetch thread does with the client."""


class Fetcher:
    """Owns a consumer and the thread that drives it; construct it on the event loop.

    Args:
        client: The consumer; nothing else may call it once `start` ran.
        name: The thread's name.
        on_batch: Called on the loop with each batch of records (errors left out) and the
            epoch time the thread fetched it.
        batch_size: Most records per batch.
        between_fetches: Runs on the fetch thread before every fetch (the worker stores offsets).
    """

    def __init__(
        self,
        client: ConsumerClient,
        *,
        name: str,
        on_batch: Callable[[list[Message], float], object],
        batch_size: int = BATCH_SIZE,
        between_fetches: Callable[[], object] | None = None,
    ) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._on_batch = on_batch
        self._batch_size = batch_size
        self._between_fetches = between_fetches
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._want_paused = False  # written by the loop, read by the fetch thread
        self._paused = False  # fetch thread only
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.started: asyncio.Future[None] = self._loop.create_future()
        """Settled on the loop once ``setup`` has run: fetching from now on, or why not."""
        self.stopped: asyncio.Future[None] = self._loop.create_future()
        """Settled on the loop once the thread has closed the client: None, or the fatal error."""

    def start(self, setup: ClientStep, teardown: ClientStep | None = None) -> None:
        """Start the thread: ``setup(client)``, fetches until `stop`, ``teardown(client)``, close.

        ``setup`` failing ends the thread: the client is closed, `started` fails with the
        error and `stopped` resolves.

        Raises:
            RuntimeError: `stop` was called already.
        """
        if self._stopping.is_set():
            raise RuntimeError("the fetcher was stopped before it started")
        self._setup, self._teardown = setup, teardown
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called (a retrying ``setup`` gives up when it is)."""
        return self._stopping.is_set()

    @property
    def paused(self) -> bool:
        """Whether fetching is paused; read it on the fetch thread (rebalance callbacks)."""
        return self._paused

    @property
    def alive(self) -> bool:
        """Whether the fetch thread is still running."""
        return self._thread.is_alive()

    def pause(self) -> None:
        """Stop fetching every assigned partition (back-pressure); applied by the thread. Loop only."""
        self._want_paused = True

    def resume(self) -> None:
        """Fetch again, waking the thread at once. Loop only."""
        self._want_paused = False
        self._wakeup.set()

    def stop(self) -> None:
        """Ask the thread to tear down and close the client; idempotent, any thread."""
        self._stopping.set()
        self._wakeup.set()

    async def close(self) -> None:
        """`stop`, then wait until the client is closed; raises the thread's fatal error, if any.

        Never started, the client has no other user: it is closed here.
        """
        self.stop()
        if self._thread.ident is None:
            self._close(None)
        await asyncio.shield(self.stopped)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._setup(self._client)
        except BaseException as exc:
            self._settle(self.started, exc)
            self._close(None)  # refused to start: `started` says why
            return
        self._settle(self.started, None)
        try:
            while not self._stopping.is_set():
                self._fetch_once()
            if self._teardown is not None:
                self._teardown(self._client)
        except BaseException as exc:
            log.exception("consumer failed", extra={"thread": self._thread.name})
            error = exc
        self._close(error)

    def _fetch_once(self) -> None:
        if self._between_fetches is not None:
            self._between_fetches()
        self._apply_pause()
        timeout = POLL_SECONDS
        if self._paused:
            # Nothing to fetch: wait for resume() or stop(), then only serve callbacks.
            self._wakeup.wait(POLL_SECONDS)
            self._wakeup.clear()
            timeout = 0
        first = self._client.poll(timeout)
        if first is None:
            return
        batch = [first]
        if self._batch_size > 1:
            batch += self._client.consume(self._batch_size - 1, 0)
        records = [message for message in batch if not error_event(message)]
        if records:
            self._loop.call_soon_threadsafe(self._on_batch, records, time.time())

    def _apply_pause(self) -> None:
        if self._want_paused == self._paused:
            return
        self._paused = self._want_paused
        try:
            partitions = self._client.assignment()
            if self._paused:
                self._client.pause(partitions)
            else:
                self._client.resume(partitions)
                self._restart(partitions)
        except KafkaException as exc:
            log.warning("could not pause or resume fetching", extra={"error": str(exc)})

    def _restart(self, partitions: list[TopicPartition]) -> None:
        """Fetch resumed partitions at once.

        librdkafka's fetcher, idle while every partition was paused, notices a resume only at
        its next timed wake-up, up to a second later; a seek wakes it. Seeking to the position
        (the next record not yet handed over, where a resume starts anyway) moves nothing.
        Under sustained overload the worker pauses and resumes every few hundred records, and
        without this each cycle idled the worker for about a second (docs/PERFORMANCE.md,
        "Resuming a paused fetch at once").
        """
        for position in self._client.position(partitions):
            if position.offset < 0:  # never fetched: nothing to restart at
                continue
            try:
                self._client.seek(position)
            except KafkaException as exc:  # fetching still resumes, only later
                log.debug(
                    "could not restart fetching at once",
                    extra={"partition": str(position), "error": str(exc)},
                )

    def _close(self, error: BaseException | None) -> None:
        try:
            self._client.close()
        except Exception as exc:
            log.warning("consumer close failed", extra={"error": str(exc)})
        self._settle(self.stopped, error)

    def _settle(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
                # Nobody may be waiting (stop() during start-up): the exception is expected.
                future.exception()

        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(settle)


def error_event(message: Message) -> bool:
    """Whether ``message`` is an error event rather than a record; a fatal one is raised."""
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer error", extra={"error": str(error)})
    return True
