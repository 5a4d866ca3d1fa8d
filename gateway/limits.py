"""`ConnectionLimits`: how long an HTTP connection may wait, and how many may be open.

Every connection holds a file descriptor. Once the process has none left, ``accept()`` fails
and the kernel resets every new caller, the kubelet's probes included, with no log line and
no metric. So the number of open connections is capped below the open-files limit, with
`FD_RESERVE` left for Kafka's sockets and the process's own files, and `raise_open_files`
lifts the soft limit to the hard one at start: containers often get a soft limit of 1,024
under a hard limit of 524,288 or more, and Python, unlike Go, does not raise it itself.

The default cap, 10,000 connections, matches ``GATEWAY_MAX_STREAMS`` (each stream is a
connection) and costs about 120 MiB when every one is idle (12 KiB each, measured with 3,000),
within the chart's 512 MiB memory limit and far below a raised open-files limit.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import GatewaySettings

log = logging.getLogger(__name__)

FD_RESERVE = 256
"""Descriptors kept for everything but HTTP connections: an idle gateway on one broker holds 35
(Kafka sockets and wake-up pipes of the producer and the reply and catalog consumers, the loop,
the listening socket); more brokers and each streamed topic's consumer add a few each."""
HEADROOM_SHARE = 0.1
"""Connections past the cap that are still read, so probes and scrapes get through, as a
share of the cap (at least `MIN_HEADROOM`); beyond them, a new one is answered 503 unread."""
MIN_HEADROOM = 32


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The deadlines and caps of the gateway's HTTP connections (defaults: the settings' own)."""

    head_timeout: float = 10.0
    """Seconds from a connection's opening, or its previous response, to a complete request head."""
    body_timeout: float = 10.0
    """Seconds an incomplete request body may go without a byte arriving."""
    keepalive_timeout: float = 5.0
    """Seconds a kept-alive connection may stay idle after a response."""
    max_connections: int = 10_000
    """Open connections served as usual; past it only probes and /metrics are answered, others 503."""
    ceiling: int = 11_000
    """Open connections past which a new one is answered 503 and closed at once, unread."""
    retry_after: int = 1
    """Seconds in the ``Retry-After`` of those 503 answers."""

    @classmethod
    def of(cls, settings: GatewaySettings, open_files: int) -> ConnectionLimits:
        """The settings' limits, lowered to fit ``open_files`` descriptors if they do not.

        Args:
            settings: ``GATEWAY_*_TIMEOUT``, ``GATEWAY_MAX_CONNECTIONS``, ``GATEWAY_RETRY_AFTER``.
            open_files: the soft ``RLIMIT_NOFILE`` in force.
        """
        cap = settings.max_connections
        headroom = max(MIN_HEADROOM, int(cap * HEADROOM_SHARE))
        ceiling = min(cap + headroom, max(open_files - FD_RESERVE, 2))
        if ceiling < cap + headroom:
            cap = max(1, ceiling - headroom, ceiling // 2)
            log.warning(
                "GATEWAY_MAX_CONNECTIONS=%d lowered to %d: the process may open only %d files "
                "(ulimit -n; %d are kept for Kafka and the process itself)",
                settings.max_connections,
                cap,
                open_files,
                FD_RESERVE,
            )
        return cls(
            head_timeout=settings.head_timeout,
            body_timeout=settings.body_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            max_connections=cap,
            ceiling=ceiling,
            retry_after=settings.retry_after,
        )


def raise_open_files() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard) or soft >= hard:
        return open_files()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # e.g. a hard limit above the kernel's nr_open
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, hard, error)
        return soft
    return hard


def open_files() -> int:
    """The soft open-files limit in force (a very large number when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30
