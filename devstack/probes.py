"""Reading another process's probes: waiting for ``/readyz``, summing ``/metrics`` samples."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from devstack.errors import LocalKafkaError

T = TypeVar("T")


class NotReadyError(LocalKafkaError):
    """A probe did not answer 200 in time."""


class _Pending(Exception):
    """What `poll` waits for does not hold yet."""


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something true, and return that.

    Args:
        what: what is awaited, for the error message.
        probe: returns a false value (None, False, empty) while waiting; raise from it to stop
            waiting at once (a child died).
        timeout: seconds before giving up.
        interval: seconds between calls.

    Raises:
        NotReadyError: ``probe`` returned nothing true within ``timeout``.
    """
    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_exception_type(_Pending),
            reraise=True,
        ):
            with attempt:
                found = probe()
                if not found:
                    raise _Pending
                return found
    except _Pending:
        pass
    raise NotReadyError(f"not within {timeout:g} s: {what}")


def wait_until_ready(url: str, timeout: float, check: Callable[[], None] | None = None) -> None:
    """Poll ``url`` every 0.2 s until it answers 200.

    Args:
        url: a loopback probe URL, e.g. ``http://127.0.0.1:8080/readyz``.
        timeout: seconds before giving up.
        check: runs before every attempt; raise from it to stop waiting (a child died).

    Raises:
        NotReadyError: no 200 within ``timeout``.
    """
    last = "no answer"

    def answered() -> bool:
        nonlocal last
        if check is not None:
            check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
                last = f"status {response.status}"
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
            return False

    try:
        poll(f"{url} answering 200", answered, timeout)
    except NotReadyError as error:
        raise NotReadyError(f"{error} (last: {last})") from None


def metric_total(exposition: str, name: str) -> float:
    """Sum of every sample called ``name`` (all label sets) in a Prometheus text exposition; 0 if none."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    )
