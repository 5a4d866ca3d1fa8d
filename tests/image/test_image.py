"""The container image, built for real by tools/image.sh and run: what a pod would run.

tools/image.sh builds the repository's Dockerfile with buildah (no Docker daemon, no registry) on a
Debian bookworm base it makes with mmdebstrap; these tests then run commands inside the image with
`buildah run` (chroot isolation) on the same storage, through `tools/image.sh buildah ...`.

Needs root and buildah and mmdebstrap (tools/image.sh installs them with apt-get). It never skips:
without a builder every test fails with tools/image.sh's own message. First run about 2 min on
2 cores (the base, then the image); after that the build is cached and the module takes ~15 s.
"""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from devstack.probes import wait_until_ready

from . import uvlock
from .dockerfile import ROOT

IMAGE_SH = ROOT / "tools" / "image.sh"
BASE_PREFIX = "localhost/kafka-rpc-gateway-base:"
VENV_SEEDS = {"pip", "setuptools"}  # what `python -m venv` puts in /opt/venv, kept by --inexact

# A cold build (base and image) takes minutes, within the first test that asks for the image.
pytestmark = pytest.mark.timeout(1200)

# Run in the image: the marker environment (to read uv.lock as this Python would), and every
# distribution installed in /opt/venv with where the project's modules come from.
PROBE = """
import importlib.metadata, importlib.util, json, os, platform, sys
info = sys.implementation.version
implementation_version = f"{info.major}.{info.minor}.{info.micro}"
print(json.dumps({
    "environment": {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
    "prefix": sys.prefix,
    "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "direct_url": importlib.metadata.distribution("kafka-rpc-gateway").read_text("direct_url.json"),
    "modules": {
        name: getattr(importlib.util.find_spec(name), "origin", None)
        for name in ("gateway", "workers", "kafkarpc", "devstack", "bench", "chaos", "tests",
                     "pytest", "ruff", "mypy", "uv")
    },
    "cache_tag": sys.implementation.cache_tag,
}))
"""


def buildah(*arguments: str, timeout: float = 120) -> str:
    """`buildah ...` on tools/image.sh's storage; its stdout. Fails the test with buildah's stderr."""
    done = subprocess.run(
        [str(IMAGE_SH), "buildah", *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"buildah {' '.join(arguments)}: exit {done.returncode}\n{done.stderr}", pytrace=False)
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    """tools/image.sh's image reference (localhost/kafka-rpc-gateway:<version>), built now."""
    done = subprocess.run([str(IMAGE_SH)], capture_output=True, text=True, timeout=1100, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-60:])
        pytest.fail(f"tools/image.sh failed (exit {done.returncode}):\n{tail}", pytrace=False)
    reference = done.stdout.strip()
    version = uvlock.project(uvlock.load())["version"]
    assert reference == f"localhost/kafka-rpc-gateway:{version}"
    return reference


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    """The image's OCI configuration (User, Cmd, Env, ...) and its layers."""
    inspected: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]
    return inspected


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    """A working container of the image, for `buildah run`."""
    name = buildah("from", "--pull=never", image).strip()
    yield name
    buildah("rm", name)


def run(container: str, *command: str, env: Sequence[str] = (), timeout: float = 120) -> str:
    """Run `command` in the container as the image runs it (its user, working directory, PATH)."""
    options = [option for variable in env for option in ("--env", variable)]
    return buildah("run", "--network", "host", *options, container, "--", *command, timeout=timeout)


@pytest.fixture(scope="module")
def probe(container: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(run(container, "python", "-c", PROBE))
    return found


def test_the_image_runs_as_uid_1001_by_default(
    config: dict[str, Any], container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config["config"]["User"] == "1001:1001"
    identity = run(container, "id").strip()
    with capsys.disabled():
        print(f"\n[image] id in the image: {identity}")
    assert run(container, "id", "-u").strip() == "1001"
    assert run(container, "id", "-g").strip() == "1001"
    assert identity == "uid=1001(app) gid=1001(app) groups=1001(app)"


def test_the_workers_print_their_usage(container: str) -> None:
    usage = run(container, "python", "-m", "workers", "--help")
    assert usage.startswith("usage: kafka-rpc-worker")
    assert "--handlers MODULE:OBJECT" in usage


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_default_command_serves_the_gateway(
    config: dict[str, Any], container: str, tmp_path: Path
) -> None:
    # `python -m gateway` has no --help: its settings are the environment. Run the image's own
    # CMD, unready (no Kafka at that address) but serving /healthz, as a pod starts.
    command = config["config"]["Cmd"]
    assert command == ["python", "-m", "gateway"]
    port = free_port()
    env = [
        "GATEWAY_AUTH=none",
        "GATEWAY_HOST=127.0.0.1",
        f"GATEWAY_PORT={port}",
        f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{free_port()}",  # nothing listens there
    ]
    log = tmp_path / "gateway.log"
    options = [option for variable in env for option in ("--env", variable)]
    with log.open("w") as output:
        gateway = subprocess.Popen(
            [str(IMAGE_SH), "buildah", "run", "--network", "host", *options, container, "--", *command],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def running() -> None:
            assert gateway.poll() is None, f"the gateway exited {gateway.returncode}:\n{log.read_text()}"

        wait_until_ready(f"http://127.0.0.1:{port}/healthz", 60, running)
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, '{"status":"ok"}'), log.read_text()
        status, _ = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503, "ready without a Kafka"
    finally:
        gateway.terminate()  # buildah stops the container's process
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=30)
    assert '"message":"starting gateway"' in log.read_text()


def test_the_installed_packages_are_exactly_uv_lock(probe: dict[str, Any]) -> None:
    assert probe["prefix"] == "/opt/venv"
    installed: dict[str, str] = {
        canonicalize_name(name): version for name, version in probe["distributions"].items()
    }
    locked = uvlock.runtime(uvlock.load(), probe["environment"])
    seeds = {name: installed.pop(name, None) for name in VENV_SEEDS}
    assert None not in seeds.values(), f"images built FROM this one could not pip install: {seeds}"
    assert installed == locked
    # not editable: the project's modules are files of the venv, with no link back to a checkout
    direct_url = json.loads(probe["direct_url"] or "{}")
    assert not direct_url.get("dir_info", {}).get("editable", False)
    for name in ("gateway", "workers", "kafkarpc"):
        assert probe["modules"][name].startswith("/opt/venv/lib/python3.11/site-packages/"), probe["modules"]


def test_no_dev_tooling_is_in_the_image(probe: dict[str, Any], container: str) -> None:
    installed = {canonicalize_name(name) for name in probe["distributions"]}
    dev = set(uvlock.dev_only(uvlock.load(), probe["environment"])) - VENV_SEEDS
    assert {"pytest", "ruff", "mypy"} <= dev
    assert not installed & dev, "the dev extra is installed"
    present = {name: origin for name, origin in probe["modules"].items() if origin is not None}
    assert set(present) == {"gateway", "workers", "kafkarpc"}, present
    on_path = run(container, "sh", "-c", "command -v pytest ruff mypy uv || true").strip()
    assert on_path == ""


def test_the_app_user_writes_only_temporary_directories_and_needs_no_compile(
    probe: dict[str, Any], container: str
) -> None:
    # The chart mounts the root file system read-only with an emptyDir at /tmp (HOME, TMPDIR).
    writable = run(container, "sh", "-c", "find / -xdev -writable 2>/dev/null || true").split()
    temporary = ("/tmp", "/var/tmp", "/run/lock", "/var/lock")
    assert [path for path in writable if not path.startswith(temporary)] == []
    # the product's bytecode is compiled in the image, not at every start
    cache_tag = probe["cache_tag"]
    compiled = run(container, "ls", "/opt/venv/lib/python3.11/site-packages/gateway/__pycache__").split()
    assert f"app.{cache_tag}.pyc" in compiled


def test_the_image_is_the_base_plus_the_venv(
    image: str, config: dict[str, Any], container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = config["rootfs"]["diff_ids"]
    images = json.loads(buildah("images", "--json"))
    bases = []
    for entry in images:
        for name in entry.get("names") or []:
            if name.startswith(BASE_PREFIX):
                base_layers = json.loads(buildah("inspect", "--type", "image", name))["OCIv1"]["rootfs"]
                if layers[: len(base_layers["diff_ids"])] == base_layers["diff_ids"]:
                    bases.append((name, entry["size"], len(base_layers["diff_ids"])))
    assert len(bases) == 1, f"no single tools/image.sh base under {image}: {bases}"
    ((base, base_size, base_count),) = bases
    (size,) = [entry["size"] for entry in images if image in (entry.get("names") or [])]
    venv = run(container, "du", "-sh", "--apparent-size", "/opt/venv").split()[0]
    with capsys.disabled():
        print(f"\n[image] {image}: {size} (base {base}: {base_size}; /opt/venv: {venv})")
    # what the Dockerfile adds to the base: the app user, then the venv; nothing of the build stage
    assert len(layers) == base_count + 2
