"""What ships: the wheel and the image's install hold the product (core, gateway, workers) only.

Both build from a copy of the Docker build context (what .dockerignore admits), so they also
show that the context suffices, and leave no build/ behind in the checkout. The image's install
is reproduced outside Docker: the Dockerfile's own ``uv sync --frozen --no-editable`` from
uv.lock into a fresh environment, then the product imported from somewhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
PRODUCT = {"kafkarpc", "gateway", "workers"}
TOOLING = ("devstack", "bench", "chaos", "tests")


def build_context(into: Path) -> Path:
    """A copy of what the Dockerfile may COPY (the paths .dockerignore admits)."""
    admitted = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    context = into / "context"
    for name in admitted:
        source, target = ROOT / name, context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return context


def test_the_wheel_holds_only_the_product_packages(tmp_path: Path) -> None:
    subprocess.run(
        # sdist first, then the wheel from it, as a release builds them
        [str(UV), "build", "--quiet", "--out-dir", str(tmp_path), str(build_context(tmp_path))],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/", 1)[0] for name in archive.namelist()}
    assert {name for name in top if not name.endswith(".dist-info")} == PRODUCT


def test_the_image_install_from_the_lock_file_runs_the_product_and_nothing_else(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(environment),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, timeout=120)
    subprocess.run(
        [str(UV), "sync", "--frozen", "--no-editable", "--inexact", "--quiet"],
        cwd=build_context(tmp_path),
        env=env,
        check=True,
        timeout=300,
    )
    python = str(environment / "bin" / "python")
    probe = (
        "import importlib.util, gateway.app, workers.runtime, kafkarpc.fetcher, confluent_kafka, uvloop\n"
        f"print(sorted(name for name in {(*TOOLING, 'pytest')!r} if importlib.util.find_spec(name)))\n"
        "print(importlib.util.find_spec('pip') is not None)"
    )
    found = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60
    )
    installed, pip = found.stdout.split()
    assert installed == "[]", "tooling or the dev extra was installed"
    assert pip == "True", "images built FROM this one could not pip install their handlers"
