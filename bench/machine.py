"""The machine a benchmark ran on: load, commit, cores, memory and the limits that bound connections."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka

from .stack import REPO_ROOT


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` shows them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def commit() -> str:
    """The checkout's short commit, ``+dirty`` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{'+dirty' if dirty else ''}"


@dataclass(frozen=True, slots=True)
class RunStart:
    """What a run records as it begins: when, the checkout it measures, and the host's load."""

    started: str
    """UTC, ``2026-12-04T20:35:54Z``."""
    commit: str
    """`commit` at the start: one made while the run goes on did not produce its figures."""
    load_before: str
    """`load_average` at the start."""

    @classmethod
    def now(cls) -> RunStart:
        """The facts as they are now."""
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(started, commit(), load_average())


def raise_open_files(needed: int) -> int:
    """Raise this process's soft open-files limit towards the hard one; children inherit it.

    Returns:
        The soft limit now in force.

    Raises:
        RuntimeError: the hard limit is below ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(f"{needed} open files are needed but the hard limit is {hard} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = hard if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def facts() -> dict[str, Any]:
    """Cores, memory, kernel, library versions and connection limits, for a report's header."""
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "open_files_limit": {"soft": soft, "hard": hard},
        "somaxconn": int(Path("/proc/sys/net/core/somaxconn").read_text()),
    }
