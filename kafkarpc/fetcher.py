"""`Fetcher`: one consumer client, one owner at a time, batches handed to the event loop.

Threading contract:

* One owner calls the client at any moment: ``setup`` (subscribe or assign), every fetch,
  the ``between_fetches`` hook, pause and resume, ``teardown`` and ``close``. Calling a
  consumer from the loop while ``consume()`` runs would deadlock confluent-kafka (the call
  holds the GIL and waits for the consuming thread), and a client closed by one thread while
  another still sets it up is used after close. One owner rules both out.
* The fetch thread owns the client by default. Each fetched batch reaches the loop with ONE
  ``call_soon_threadsafe(on_batch, records, fetched_at)``. A fetch waits in ``poll()``, which
  returns at the first record without holding the GIL, then takes what is already fetched
  with ``consume(n, timeout=0)``: ``consume(n, timeout)`` alone would wait the whole timeout
  unless n records arrive.
* ``on_loop=True`` hands the client to the loop once ``setup`` has run, where librdkafka can
  wake it directly (`kafkarpc.queueevents`): the loop watches the wake-up descriptor and
  takes each batch with ``consume(n, timeout=0)``, one thread wake-up per batch instead of
  two. Only for clients whose callbacks never wait for the loop (no rebalance callbacks that
  drain): they run on the loop there. Where wake-ups are unavailable the thread stays.
* `stop` may be called from any thread; the owner notices (the thread within
  `POLL_SECONDS`), runs ``teardown``, closes the client (off the loop) and settles `stopped`
  on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException

from .queueevents import QueueEvents, queue_events

if TYPE_CHECKING:
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
        between_fetches: Runs on the owner's thread before every fetch (the worker stores offsets).
        on_loop: Fetch on the loop, woken by librdkafka, once ``setup`` has run (where it can).
    """

    def __init__(
        self,
        client: ConsumerClient,
        *,
        name: str,
        on_batch: Callable[[list[Message], float], object],
        batch_size: int = BATCH_SIZE,
        between_fetches: Callable[[], object] | None = None,
        on_loop: bool = False,
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
        self._events: QueueEvents | None = queue_events(client) if on_loop else None
        self._attached = False  # the loop owns the client and watches self._events (loop only)
        self.started: asyncio.Future[None] = self._loop.create_future()
        """Settled on the loop once ``setup`` has run: fetching from now on, or why not."""
        self.stopped: asyncio.Future[None] = self._loop.create_future()
        """Settled on the loop once the client is closed: None, or the fatal error."""

    def start(self, setup: ClientStep, teardown: ClientStep | None = None) -> None:
        """Start the thread: ``setup(client)``, fetches (on the loop with ``on_loop``) until
        `stop`, ``teardown(client)``, close.

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
    def on_loop(self) -> bool:
        """Whether the loop fetches, woken by librdkafka, once set up (else the thread does)."""
        return self._events is not None

    @property
    def alive(self) -> bool:
        """Whether records are still fetched (by the thread, or on the loop)."""
        return self._thread.is_alive() or self._attached

    def pause(self) -> None:
        """Stop fetching every assigned partition (back-pressure), from the next fetch on. Loop only."""
        self._want_paused = True

    def resume(self) -> None:
        """Fetch again at once. Loop only."""
        self._want_paused = False
        self._wakeup.set()
        if self._attached:
            self._loop.call_soon(self._fetch_on_loop)

    def stop(self) -> None:
        """Ask the owner to tear down and close the client; idempotent, any thread."""
        self._stopping.set()
        self._wakeup.set()
        if self._events is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._detach, None)

    async def close(self) -> None:
        """`stop`, then wait until the client is closed; raises the fetch's fatal error, if any.

        Never started, the client has no other user: it is closed here.
        """
        self.stop()
        if self._thread.ident is None:
            self._release(None)
        await asyncio.shield(self.stopped)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._setup(self._client)
        except BaseException as exc:
            self._settle(self.started, exc)
            self._release(None)  # refused to start: `started` says why
            return
        if self._events is not None:
            if self._loop.is_closed():
                self._release(None)
            else:
                self._loop.call_soon_threadsafe(self._attach)  # the loop owns the client from here
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
        self._release(error)

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

    def _attach(self) -> None:
        """Take the client over on the loop: fetch whenever librdkafka signals records."""
        assert self._events is not None
        self._settle_now(self.started, None)
        if self._stopping.is_set():
            self._close_off_loop(None)
            return
        self._attached = True
        self._loop.add_reader(self._events.fd, self._fetch_on_loop)
        self._fetch_on_loop()  # records queued before the wake-ups were watched

    def _fetch_on_loop(self) -> None:
        if not self._attached:
            return
        assert self._events is not None
        self._events.drain()
        try:
            if self._between_fetches is not None:
                self._between_fetches()
            self._apply_pause()
            batch = self._client.consume(self._batch_size, 0)
            records = [message for message in batch if not error_event(message)]
        except Exception as exc:
            log.exception("consumer failed", extra={"thread": self._thread.name})
            self._detach(exc)
            return
        if records:
            self._on_batch(records, time.time())
        if len(batch) == self._batch_size:
            # More may be queued, and librdkafka signals only the next arrival: come back
            # after whatever else is ready.
            self._loop.call_soon(self._fetch_on_loop)

    def _detach(self, error: BaseException | None) -> None:
        """Stop fetching on the loop (if it does), then close the client off it."""
        if not self._attached:
            return  # not yet attached (`_attach` sees `stopping`), or detached already
        self._attached = False
        assert self._events is not None
        self._loop.remove_reader(self._events.fd)
        self._close_off_loop(error)

    def _close_off_loop(self, error: BaseException | None) -> None:
        """Tear down and close on a thread of their own: closing may block."""
        name = self._thread.name
        threading.Thread(target=self._close_detached, args=(error,), name=name, daemon=True).start()

    def _close_detached(self, error: BaseException | None) -> None:
        try:
            if self._teardown is not None and error is None:
                self._teardown(self._client)
        except BaseException as exc:
            log.exception("consumer teardown failed", extra={"thread": self._thread.name})
            error = exc
        self._release(error)

    def _apply_pause(self) -> None:
        if self._want_paused == self._paused:
            return
        self._paused = self._want_paused
        action = self._client.pause if self._paused else self._client.resume
        try:
            action(self._client.assignment())
        except KafkaException as exc:
            log.warning("could not pause or resume fetching", extra={"error": str(exc)})

    def _release(self, error: BaseException | None) -> None:
        """Close the wake-ups, then the client; settle `stopped`."""
        if self._events is not None:
            self._events.close()
        try:
            self._client.close()
        except Exception as exc:
            log.warning("consumer close failed", extra={"error": str(exc)})
        self._settle(self.stopped, error)

    def _settle(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._settle_now, future, error)

    @staticmethod
    def _settle_now(future: asyncio.Future[None], error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            # Nobody may be waiting (stop() during start-up): the exception is expected.
            future.exception()


def error_event(message: Message) -> bool:
    """Whether ``message`` is an error event rather than a record; a fatal one is raised."""
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer error", extra={"error": str(error)})
    return True
