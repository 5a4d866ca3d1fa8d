"""The chart's SASL/TLS values configure exactly the client the secured integration tests run.

`devstack.credentials.client_properties` is the one definition: tests/integration/
test_secured_kafka.py connects the real gateway and workers with it to a broker that
enforces SCRAM-SHA-512 over TLS and ACLs; here each Deployment is rendered, its SASL init
container run, and the configuration the app would build from the pod compared with it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack.credentials import MECHANISM, SECRET_PROPERTIES, Credentials, client_properties
from kafkarpc.connection import KafkaSettings

from .conftest import BOOTSTRAP, Helm, Manifests, with_kafka

MOUNT_ROOT = "/etc/kafka-rpc-gateway"
# As the secured integration tests run: gateway and workers are Kafka users of their own.
SASL = {"enabled": True, "mechanism": MECHANISM, "gatewaySecret": "rpc-gateway", "workerSecret": "rpc-worker"}
TLS = {"enabled": True, "existingSecret": "kafka-cluster-ca", "caKey": "ca.crt"}
SECURED = {"kafka": {"bootstrapServers": BOOTSTRAP, "sasl": SASL, "tls": TLS}}
USERS = {
    # What a Secret might hold: characters a properties file or a shell could trip over.
    "gateway": Credentials("gateway", 'p=ss #wo\'rd "x" $HOME \\n'),
    "worker": Credentials("worker", "an0ther-0ne"),
}


@pytest.fixture(scope="module")
def secured(helm: Helm) -> Manifests:
    return helm.render(with_kafka(SECURED))


@pytest.mark.parametrize("component", ["gateway", "worker"])
def test_sasl_tls_values_configure_the_client_the_secured_tests_use(
    secured: Manifests, component: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pod = secured.deployment(component)["spec"]["template"]["spec"]
    user = USERS[component]
    assert _volume(pod, "kafka-sasl")["secret"]["secretName"] == SASL[f"{component}Secret"]
    written = _run_init_container(pod, tmp_path, user)
    for key, value in secured.config().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAFKA_PROPERTIES_FILE", str(written))

    ca = _mounted_path(pod, "kafka-tls", "ca.crt")
    assert KafkaSettings().client_config() == {"bootstrap.servers": BOOTSTRAP, **client_properties(user, ca)}
    # The secrets come from the file the init container wrote, never from the ConfigMap.
    assert not set(SECRET_PROPERTIES) & set(json.loads(secured.config()["KAFKA_PROPERTIES"]))


def test_verification_of_the_broker_stays_on_unless_overridden(helm: Helm):
    properties = json.loads(helm.render(with_kafka(SECURED)).config()["KAFKA_PROPERTIES"])
    assert properties["ssl.endpoint.identification.algorithm"] == "https"
    assert "enable.ssl.certificate.verification" not in properties  # librdkafka's default: true


def test_one_shared_secret_still_serves_both(helm: Helm):
    shared = {"kafka": {"bootstrapServers": BOOTSTRAP, "sasl": {"enabled": True, "existingSecret": "rpc"}}}
    manifests = helm.render(with_kafka(shared))
    for component in ("gateway", "worker"):
        pod = manifests.deployment(component)["spec"]["template"]["spec"]
        assert _volume(pod, "kafka-sasl")["secret"]["secretName"] == "rpc"


def test_sasl_needs_a_secret_for_each_component(helm: Helm):
    values = {"kafka": {"bootstrapServers": BOOTSTRAP, "sasl": {"enabled": True, "gatewaySecret": "g"}}}
    error = helm.render_error(with_kafka(values))
    assert "values don't meet the specifications of the schema" in error
    assert "workerSecret" in error


def test_keda_reads_the_lag_as_the_workers_user(helm: Helm):
    values = with_kafka({**SECURED, "worker": {"keda": {"enabled": True}}})
    authentication = helm.render(values, api_versions=["keda.sh/v1alpha1"]).one("TriggerAuthentication")
    secrets = {ref["parameter"]: ref["name"] for ref in authentication["spec"]["secretTargetRef"]}
    assert secrets["username"] == secrets["password"] == SASL["workerSecret"]


def _run_init_container(pod: dict[str, Any], root: Path, user: Credentials) -> Path:
    """Run the SASL init container's script under ``root``; the properties file it wrote."""
    init = pod["initContainers"][0]
    mounts = {mount["name"]: mount["mountPath"] for mount in init["volumeMounts"]}
    secret = {item["path"]: item["key"] for item in _volume(pod, "kafka-sasl")["secret"]["items"]}
    sasl: Path = root / mounts["kafka-sasl"].removeprefix("/")
    client: Path = root / mounts["kafka-client"].removeprefix("/")
    sasl.mkdir(parents=True)
    client.mkdir(parents=True)
    # Secret keys usernameKey/passwordKey are projected as files named username and password.
    assert secret == {"username": "username", "password": "password"}
    (sasl / "username").write_text(user.username)
    (sasl / "password").write_text(user.password + "\n")  # as `echo ... | kubectl create secret` leaves it
    script = init["command"][2].replace(MOUNT_ROOT, str(root / MOUNT_ROOT.removeprefix("/")))
    subprocess.run(["/bin/sh", "-ec", script], check=True, timeout=10)
    files = list(client.iterdir())
    assert len(files) == 1
    return files[0]


def _mounted_path(pod: dict[str, Any], volume: str, item: str) -> str:
    """Where the app container sees ``item`` of ``volume``."""
    app = pod["containers"][0]
    mount = next(m["mountPath"] for m in app["volumeMounts"] if m["name"] == volume)
    assert item in {entry["path"] for entry in _volume(pod, volume)["secret"]["items"]}
    return f"{mount}/{item}"


def _volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    volume: dict[str, Any] = next(v for v in pod["volumes"] if v["name"] == name)
    return volume
