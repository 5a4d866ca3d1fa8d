"""Running a benchmark module's ``--smoke`` mode as CI does, for the smoke tests' fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, *arguments: str, timeout: float = 120) -> str:
    """``python -m <module> <arguments>`` from the repository, which must succeed; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def run_smoke(module: str, stem: str, out: Path) -> tuple[Path, dict[str, Any]]:
    """``python -m <module> --smoke --out <out>``; the output folder and its ``<stem>-smoke.json``."""
    run_module(module, "--smoke", "--out", str(out))
    return out, orjson.loads((out / f"{stem}-smoke.json").read_bytes())
