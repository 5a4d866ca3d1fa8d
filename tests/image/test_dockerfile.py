"""The Dockerfile read against uv.lock, tools/uv.txt, .dockerignore and the chart, without building.

tests/image/test_image.py builds the image and looks inside; these checks need no builder and take
well under a second: that the build context holds everything the Dockerfile copies and nothing it
does not, that the install is uv.lock's (frozen, hash-pinned uv, no dev extra, not editable), that
every runtime dependency has a wheel for both architectures the docs promise, and that the image
runs as the chart's non-root user.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from typing import Any

import pytest
import yaml
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from . import uvlock
from .dockerfile import ROOT, Instruction, dockerignore_admits, env, global_args, stages

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def linux(machine: str) -> dict[str, str]:
    """PEP 508 marker environment of CPython 3.11 on Linux: either base, on `machine`."""
    return {
        "implementation_name": "cpython",
        "implementation_version": "3.11.2",  # Debian bookworm's, the oldest 3.11 of either base
        "os_name": "posix",
        "platform_machine": machine,
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": "3.11.2",
        "platform_python_implementation": "CPython",
        "python_version": "3.11",
        "sys_platform": "linux",
    }


def build() -> list[Instruction]:
    return stages()[0]


def final() -> list[Instruction]:
    return stages()[-1]


def runs(stage: list[Instruction], command: str) -> list[str]:
    """The RUN instructions of `stage` that call `command`, as written."""
    calls = re.compile(rf"(^|[/\s]){command}\b")
    return [i.arguments for i in stage if i.keyword == "RUN" and calls.search(i.arguments)]


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    context_copies = [
        i for stage in stages() for i in stage if i.keyword in {"COPY", "ADD"} and "from" not in i.flags()
    ]
    sources = {source.rstrip("/") for i in context_copies for source in i.operands()[:-1]}
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", *sources], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for source in sources:
        files = [name for name in tracked if name == source or name.startswith(source + "/")]
        assert files, f"COPY {source}: not in the repository"
        left_out = [name for name in files if not dockerignore_admits(name)]
        assert not left_out, f"COPY {source}: .dockerignore leaves out {left_out}"
    admitted = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert admitted == sources, "the context should hold exactly what the Dockerfile copies"
    assert not dockerignore_admits("tests/conftest.py")
    assert not dockerignore_admits(".venv/bin/python")
    assert not dockerignore_admits("gateway/__pycache__/app.cpython-311.pyc")


def test_uv_is_installed_from_its_hash_pinned_requirement() -> None:
    (install,) = runs(build(), "pip")
    assert "--require-hashes" in install.split()
    assert "-r tools/uv.txt" in install
    requirements = re.sub(r"\\\n", " ", (ROOT / "tools" / "uv.txt").read_text()).splitlines()
    (pinned,) = [line.split() for line in requirements if line and not line.lstrip().startswith("#")]
    assert re.fullmatch(r"uv==[0-9.]+", pinned[0]), "one requirement: uv, at one version"
    assert any(word.startswith("--hash=sha256:") for word in pinned[1:])


def test_the_install_is_exactly_uv_lock_without_the_dev_extra_and_not_editable() -> None:
    syncs = runs(build(), "uv sync")
    assert syncs, "the build stage does not run uv sync"
    for sync in syncs:
        words = sync.split()
        assert "--frozen" in words, f"not frozen to uv.lock: {sync}"
        assert "--no-editable" in words, f"editable: {sync}"
        assert not {"--extra", "--all-extras", "--dev", "--all-groups", "--group"} & set(words), sync
        assert not any(word.startswith(("--extra=", "--group=")) for word in words), sync
    variables = env(build())
    assert variables["UV_PROJECT_ENVIRONMENT"] == "/opt/venv"
    assert variables["UV_PYTHON_DOWNLOADS"] == "never", "uv could install a Python other than the base's"
    assert variables["UV_COMPILE_BYTECODE"] == "1", "every start would compile (and on a read-only root)"
    # uv.lock is in place before the first sync
    stage = build()
    copied_lock = next(n for n, i in enumerate(stage) if i.keyword == "COPY" and "uv.lock" in i.operands())
    first_sync = next(n for n, i in enumerate(stage) if i.keyword == "RUN" and "uv sync" in i.arguments)
    assert copied_lock < first_sync


def test_the_image_version_defaults_to_the_projects() -> None:
    packages = uvlock.load()
    assert global_args()["VERSION"] == PYPROJECT["project"]["version"] == uvlock.project(packages)["version"]


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_runtime_dependency_ships_a_manylinux_wheel(machine: str) -> None:
    # "no compiler" in the Dockerfile, "every dependency ships wheels for both" in docs/KUBERNETES.md
    platforms = [f"manylinux_2_{glibc}_{machine}" for glibc in range(36, 4, -1)]  # bookworm: glibc 2.36
    platforms += [f"manylinux{legacy}_{machine}" for legacy in ("2014", "2010", "1")]
    supported: set[Tag] = {
        *cpython_tags((3, 11), ["cp311"], platforms),
        *compatible_tags((3, 11), "cp311", platforms),
    }
    packages = uvlock.load()
    own = uvlock.project(packages)["name"]
    missing = []
    for name, version in uvlock.runtime(packages, linux(machine)).items():
        if name == own:
            continue  # built from the checkout (pure Python)
        (locked,) = (p for p in packages if p["name"] == name and p["version"] == version)
        wheels: list[dict[str, Any]] = locked.get("wheels", [])
        if not any(parse_wheel_filename(w["url"].rsplit("/", 1)[1])[3] & supported for w in wheels):
            missing.append(f"{name}=={version}")
    assert not missing, f"no CPython 3.11 manylinux {machine} wheel in uv.lock (a compiler needed): {missing}"


def test_the_image_runs_as_the_charts_non_root_user_and_the_gateway_by_default() -> None:
    values = yaml.safe_load((ROOT / "charts" / "kafka-rpc-gateway" / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    stage = final()
    (user,) = [i.arguments for i in stage if i.keyword == "USER"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}", "numeric, as runAsNonRoot can verify"
    user_at = next(n for n, i in enumerate(stage) if i.keyword == "USER")
    assert not [i for i in stage[user_at:] if i.keyword == "RUN"], "the image's setup all runs as root"
    (accounts,) = runs(stage, "groupadd")
    assert f"--gid {pod['runAsGroup']}" in accounts
    assert f"--uid {pod['runAsUser']}" in accounts
    (cmd,) = [i.arguments for i in stage if i.keyword == "CMD"]
    assert cmd == '["python", "-m", "gateway"]'


def test_the_final_stage_takes_only_the_venv_and_is_read_only_root_friendly() -> None:
    stage = final()
    copies = [i for i in stage if i.keyword in {"COPY", "ADD"}]
    assert [(i.flags(), i.operands()) for i in copies] == [({"from": "build"}, ["/opt/venv", "/opt/venv"])]
    variables = env(stage)
    assert variables["PATH"].startswith("/opt/venv/bin:")
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"
    assert variables["HOME"] == variables["TMPDIR"] == "/tmp", "the chart's writable emptyDir"
