"""This build's version, for metrics and traces."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed package's version; ``unknown`` when run from a source tree never installed."""
    try:
        return metadata.version("kafka-rpc-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"
