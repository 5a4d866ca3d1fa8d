"""Loopback ports for local brokers: free ones, or configured ones checked up front."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from devstack.errors import LocalKafkaError


def claim(count: int, first: int | None = None) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that are free right now.

    With ``first``, the ports are ``first, first + 1, ...`` and must all be free.

    Raises:
        LocalKafkaError: a configured port is taken, naming it and the fix.
    """
    with ExitStack() as held:
        found: list[int] = []
        for index in range(count):
            wanted = 0 if first is None else first + index
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", wanted))
            except OSError as error:
                raise LocalKafkaError(
                    f"port {wanted} on 127.0.0.1 is in use ({error.strerror}): stop what holds it "
                    "(another Kafka?) or choose another with LOCAL_KAFKA_PORT, or unset it for a free port"
                ) from None
            found.append(sock.getsockname()[1])
        # Holding every socket until all are chosen keeps the ports distinct.
        return found
