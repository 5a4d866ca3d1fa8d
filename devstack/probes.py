"""Reading another process's probes: waiting for ``/readyz``, summing ``/metrics`` samples."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from devstack.errors import LocalKafkaError


class NotReadyError(LocalKafkaError):
    """A probe did not answer 200 in time."""


def wait_until_ready(url: str, timeout: float, check: Callable[[], None] | None = None) -> None:
    """Poll ``url`` every 0.2 s until it answers 200.

    Args:
        url: a loopback probe URL, e.g. ``http://127.0.0.1:8080/readyz``.
        timeout: seconds before giving up.
        check: runs before every attempt; raise from it to stop waiting (a child died).

    Raises:
        NotReadyError: no 200 within ``timeout``.
    """
    for attempt in Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type(NotReadyError),
        reraise=True,
    ):
        with attempt:
            if check is not None:
                check()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                raise NotReadyError(f"{url}: {error}") from error
            raise NotReadyError(f"{url} is not ready")


def metric_total(exposition: str, name: str) -> float:
    """Sum of every sample called ``name`` (all label sets) in a Prometheus text exposition; 0 if none."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    )
