"""`QueueEvents`: librdkafka wakes the event loop itself when a consumer's records arrive.

librdkafka can write to a file descriptor whenever a queue turns non-empty
(``rd_kafka_queue_io_event_enable``), so an event loop can watch that descriptor and take the
records with ``consume(n, 0)`` on its own thread. confluent-kafka does not expose the call, so
without it records reach a loop through a thread that blocks in ``poll()`` and then wakes the
loop: two thread wake-ups per batch where one does, about 0.1 ms of every reply at low load
(docs/PERFORMANCE.md, "The reply consumer on the loop").

The call needs the ``rd_kafka_t`` behind a ``confluent_kafka.Consumer``: the first field after
the object header of confluent-kafka's C ``Handle``, a private layout. So `queue_events` uses it
only with the confluent-kafka release it was tested against (`TESTED`, the one uv.lock pins;
tests/kafkarpc/test_queueevents.py fails when the lock moves), calls librdkafka through ctypes
in the very library confluent-kafka loaded, and checks the handle (a consumer, named like one)
before touching its queue. Anything else returns None, and the caller keeps its fetch thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka

log = logging.getLogger(__name__)

TESTED = frozenset({"2.16.1"})
"""confluent-kafka releases whose ``Handle`` layout this module was tested against."""
_CONSUMER = 1
"""librdkafka's ``RD_KAFKA_CONSUMER``."""
_WAKE = b"!"
_SIGNATURES: tuple[
    tuple[str, list[type[ctypes._SimpleCData[Any]]], type[ctypes._SimpleCData[Any]] | None], ...
] = (
    ("rd_kafka_type", [ctypes.c_void_p], ctypes.c_int),
    ("rd_kafka_name", [ctypes.c_void_p], ctypes.c_char_p),
    ("rd_kafka_queue_get_consumer", [ctypes.c_void_p], ctypes.c_void_p),
    (
        "rd_kafka_queue_io_event_enable",
        [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t],
        None,
    ),
    ("rd_kafka_queue_destroy", [ctypes.c_void_p], None),
)
"""The librdkafka functions called here: (name, argument types, result type)."""


class QueueEvents:
    """A pipe librdkafka writes a byte to when the consumer's queue turns non-empty.

    librdkafka writes once per period between two reads of the queue: after a wake-up, the
    owner must ``consume()`` before it can be woken again. `close` before closing the consumer
    (a queue handle left open keeps librdkafka from shutting down).
    """

    def __init__(self, library: ctypes.CDLL, queue: int) -> None:
        self._library = library
        self._queue: int | None = queue
        self.fd, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        """The descriptor to watch for reading."""
        library.rd_kafka_queue_io_event_enable(queue, self._write, _WAKE, len(_WAKE))

    def drain(self) -> None:
        """Read the wake-ups written so far: one read, since librdkafka writes one per period
        (were there more, the descriptor would stay readable and wake the loop once more)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 4096)

    def close(self) -> None:
        """Stop the wake-ups and release the queue handle; idempotent."""
        if self._queue is None:
            return
        queue, self._queue = self._queue, None
        self._library.rd_kafka_queue_io_event_enable(queue, -1, None, 0)
        self._library.rd_kafka_queue_destroy(queue)
        os.close(self.fd)
        os.close(self._write)


def queue_events(consumer: object) -> QueueEvents | None:
    """Wake-ups for ``consumer``'s queue, or None where that cannot be done safely (another
    confluent-kafka release, another client type, a closed consumer, no librdkafka found)."""
    library = _librdkafka()
    if library is None or type(consumer) is not confluent_kafka.Consumer:
        return None
    handle = ctypes.c_void_p.from_address(id(consumer) + object.__basicsize__).value
    if not handle or library.rd_kafka_type(handle) != _CONSUMER:
        return None
    if b"#consumer-" not in (library.rd_kafka_name(handle) or b""):
        return None
    queue = library.rd_kafka_queue_get_consumer(handle)
    if not queue:  # no group.id: the consumer has no queue of its own
        return None
    return QueueEvents(library, queue)


@functools.cache
def _librdkafka() -> ctypes.CDLL | None:
    """The librdkafka that confluent-kafka loaded, typed for the calls above; None if unusable."""
    version = metadata.version("confluent-kafka")
    if version not in TESTED:
        log.info(
            "untested confluent-kafka: consumers hand records over through a thread",
            extra={"version": version},
        )
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return None
    paths = {
        fields[5]
        for fields in map(str.split, maps.splitlines())
        if len(fields) == 6 and "librdkafka" in fields[5]
    }
    if len(paths) != 1:
        return None
    library = ctypes.CDLL(paths.pop())
    for name, arguments, result in _SIGNATURES:
        function = getattr(library, name)
        function.argtypes, function.restype = arguments, result
    return library
