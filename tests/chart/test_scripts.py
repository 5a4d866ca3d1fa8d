"""The programs embedded in the chart, run here: the SASL init container and the helm test hook."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kafkarpc.connection import KafkaSettings

from .conftest import Helm, Manifests, with_kafka

MOUNT_ROOT = "/etc/kafka-rpc-gateway"


def test_init_container_writes_a_properties_file_the_app_reads(everything: Manifests, tmp_path: Path):
    pod = everything.deployment("worker")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["command"][:2] == ["/bin/sh", "-ec"]
    mounts = {mount["name"]: mount["mountPath"] for mount in init["volumeMounts"]}
    sasl_dir = tmp_path / mounts["kafka-sasl"].removeprefix("/")
    client_dir = tmp_path / mounts["kafka-client"].removeprefix("/")
    sasl_dir.mkdir(parents=True)
    client_dir.mkdir(parents=True)
    # A password with '=', '#', spaces and quotes, stored with the trailing newline `echo` leaves.
    password = 'p=ss #wo\'rd "x" $HOME'
    (sasl_dir / "username").write_text("rpc-user\n")
    (sasl_dir / "password").write_text(password + "\n")
    script = init["command"][2].replace(MOUNT_ROOT, str(tmp_path / MOUNT_ROOT.removeprefix("/")))
    subprocess.run(["/bin/sh", "-ec", script], check=True, timeout=10)

    properties_file = everything.config()["KAFKA_PROPERTIES_FILE"]
    written = tmp_path / properties_file.removeprefix("/")
    assert written.stat().st_mode & 0o077 == 0  # umask 077: readable by the app user only
    config = KafkaSettings(bootstrap_servers="b:9092", properties_file=written).client_config()
    assert config["sasl.username"] == "rpc-user"
    assert config["sasl.password"] == password


class FakeGateway(BaseHTTPRequestHandler):
    """Answers POST /rpc/echo with the status the test chose, recording what it received."""

    status: ClassVar[int] = 200
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append({"path": self.path, "body": body, "prefer": self.headers["prefer"]})
        self.send_response(self.status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def fake_gateway() -> Iterator[ThreadingHTTPServer]:
    FakeGateway.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


GUARDED = {"gateway": {"auth": {"mode": "apikey", "apiKeysSecret": "keys", "policy": {"methods": {"*": []}}}}}


@pytest.mark.parametrize(
    ("auth", "status", "exit_code"),
    [
        ("none", 200, 0),
        ("none", 504, 1),
        ("none", 502, 1),
        ("none", 401, 1),
        ("apikey", 401, 0),
        ("apikey", 200, 1),
    ],
)
def test_helm_test_hook_passes_on_200_or_with_access_control_on_401(
    helm: Helm, fake_gateway: ThreadingHTTPServer, auth: str, status: int, exit_code: int
):
    FakeGateway.status = status
    manifests = helm.render(with_kafka(GUARDED if auth == "apikey" else None))
    spec = manifests.one("Pod")["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in spec["env"]}
    port = fake_gateway.server_address[1]
    env["RPC_URL"] = f"http://127.0.0.1:{port}/rpc/echo"
    assert spec["command"][:2] == ["python", "-c"]
    result = subprocess.run(
        [sys.executable, "-c", spec["command"][2]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert f"-> {status}" in result.stdout
    assert FakeGateway.received == [
        {"path": "/rpc/echo", "body": env["RPC_BODY"].encode(), "prefer": f"wait={env['RPC_WAIT']}"}
    ]
