"""A real Kubernetes control plane on loopback, for installing the chart with helm.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real programs, built
from the Go module proxy by tools/kubernetes.sh; one simulated node (kwok) takes the place of a
kubelet, so Pods are scheduled and reported Running and Ready, but their containers never run.
Certificates and the service-account key are made with openssl at start-up.

``python -m devstack.controlplane`` (``make kubernetes``) runs one until Ctrl-C and prints the
kubeconfig path for helm; the chart's install tests start one with `ControlPlane`.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import yaml

from devstack import certificates
from devstack.errors import LocalKafkaError
from devstack.ports import claim
from devstack.probes import NotReadyError, poll
from devstack.process import Child
from devstack.signals import wait_in_slices

TOOLS = Path(__file__).resolve().parent.parent / "tools"
STARTUP_TIMEOUT = 90.0
NODE = "kwok-node-0"
# The in-cluster address of the `kubernetes` Service: the first address of the service range.
SERVICE_RANGE, SERVICE_IP = "10.96.0.0/16", "10.96.0.1"


class ControlPlaneError(LocalKafkaError):
    """A part of the control plane did not start; the message carries its log."""


class ControlPlane:
    """etcd, the API server, the controller manager, the scheduler and one kwok node.

    `kubeconfig` is for helm; `api` is an httpx client of the API server with the same admin
    credentials (group ``system:masters``), for tests that read or write objects directly.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs = directory / "logs"
        self.kubeconfig = directory / "kubeconfig"
        self._children: list[Child] = []
        self._api: httpx.Client | None = None

    @property
    def api(self) -> httpx.Client:
        """The API server, as the cluster's administrator."""
        if self._api is None:
            raise RuntimeError("the control plane is not started")
        return self._api

    @property
    def programs(self) -> Path:
        """Where tools/kubernetes.sh built the programs, kwok's stages and the CRDs (crds/).

        Raises:
            ControlPlaneError: they are not built (``make kubernetes-tools`` builds them; a
                15-minute build does not belong inside a test's time limit).
        """
        found = subprocess.run(
            [str(TOOLS / "kubernetes.sh"), "--check"], capture_output=True, text=True, check=False
        )
        if found.returncode != 0:
            raise ControlPlaneError(found.stderr.strip())
        return Path(found.stdout.strip())

    def start(self) -> None:
        """Start every part and wait until a namespace's Pods can be admitted, scheduled and
        reported Ready.

        Raises:
            ControlPlaneError: the programs are not built, or a part exited or did not come up
                in time (its log is in the message).
        """
        programs = self.programs
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = self.directory / "pki"
        authority = certificates.issue(
            pki,
            hosts=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1", SERVICE_IP),
            subject="/CN=kube-apiserver",
        )
        admin = certificates.client(pki, "/O=system:masters/CN=admin")
        signing_key, verifying_key = certificates.key_pair(pki, "service-account")
        etcd_port, etcd_peer, api_port = claim(3)
        server = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfig(server, authority.ca, admin)
        tls = ssl.create_default_context(cafile=authority.ca)
        tls.load_cert_chain(admin)
        # trust_env off: a proxy from the environment must not see loopback traffic.
        self._api = httpx.Client(base_url=server, verify=tls, timeout=10, trust_env=False)

        self._spawn(
            "etcd",
            [
                str(programs / "etcd"),
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                # A throwaway cluster: no fsync per write, as kwok's own clusters run it.
                "--unsafe-no-fsync",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(programs / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The `kubernetes` Service's endpoints may not be a loopback address; no Pod runs
                # here to call it, so nothing reconciles them.
                "--endpoint-reconciler-type=none",
                f"--secure-port={api_port}",
                f"--tls-cert-file={authority.keystore}",
                f"--tls-private-key-file={authority.keystore}",
                f"--client-ca-file={authority.ca}",
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default; named so that a change of defaults cannot drop it.
                "--enable-admission-plugins=PodSecurity",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={verifying_key}",
                f"--service-account-signing-key-file={signing_key}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                f"--cert-dir={pki}",
                "--profiling=false",
                # Reads go to etcd. With the watch cache, every change to a CRD rebuilds its
                # cache, and lists fail with 429 "storage is (re)initializing" until it is built
                # (KEP-4568): the CRD finalizer's list fails at once, and its exponential retry
                # left deleted CRDs Terminating for minutes. A cluster this small needs no cache.
                "--watch-cache=false",
            ],
        )
        self._wait("the API server's /readyz", lambda: self._ok("/readyz"))
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
        self._spawn(
            "kube-controller-manager",
            [
                str(programs / "kube-controller-manager"),
                *common,
                f"--service-account-private-key-file={signing_key}",
                f"--root-ca-file={authority.ca}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
            ],
        )
        self._spawn("kube-scheduler", [str(programs / "kube-scheduler"), *common])
        stages = sorted((programs / "stages").glob("*.yaml"))
        self._spawn(
            "kwok",
            [
                str(programs / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                *(f"--config={stage}" for stage in stages),
            ],
        )
        self._add_node()
        self._wait(f"node {NODE} Ready", self._node_ready)
        # The controller manager's service-account controller makes `default` in each namespace;
        # without it every Pod is refused, for that reason and not its security context.
        self._wait(
            "the default service account",
            lambda: self._ok("/api/v1/namespaces/default/serviceaccounts/default"),
        )

    def _write_kubeconfig(self, server: str, ca: Path, admin: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [
                {"name": "admin", "user": {"client-certificate": str(admin), "client-key": str(admin)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _add_node(self) -> None:
        """A Node for kwok to play: ready, with the capacity of a small real one."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    "topology.kubernetes.io/zone": "zone-a",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        response = self.api.post("/api/v1/nodes", json=node)
        if not response.is_success:
            raise ControlPlaneError(
                f"the API server refused the kwok node: {response.status_code} {response.text}"
            )

    def _node_ready(self) -> bool:
        try:
            response = self.api.get(f"/api/v1/nodes/{NODE}")
        except httpx.TransportError:
            return False
        conditions = response.json().get("status", {}).get("conditions", []) if response.is_success else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _ok(self, path: str) -> bool:
        try:
            return self.api.get(path).is_success
        except httpx.TransportError:
            return False

    def _spawn(self, name: str, command: list[str]) -> None:
        self._children.append(Child.spawn(name, command, dict(os.environ), self.logs / f"{name}.log"))

    def _wait(self, what: str, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds; fail at once with its log if a part exits."""

        def holds() -> bool:
            self._check()
            return condition()

        try:
            poll(what, holds, STARTUP_TIMEOUT)
        except NotReadyError as error:
            logs = "\n".join(f"--- {child.name}\n{child.tail(15)}" for child in self._children)
            raise ControlPlaneError(
                f"the control plane is not up, {error}; logs in {self.logs}:\n{logs}"
            ) from None

    def _check(self) -> None:
        for child in self._children:
            if child.process.poll() is not None:
                raise ControlPlaneError(
                    f"{child.name} exited with {child.process.returncode}:\n{child.tail(40)}"
                )

    def stop(self) -> None:
        """Stop every part, last started first."""
        if self._api is not None:
            self._api.close()
        for child in reversed(self._children):
            child.stop(10)
        self._children.clear()

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def main() -> int:
    """Run a control plane until Ctrl-C; print how to point helm at it."""
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    with tempfile.TemporaryDirectory(prefix="kafka-rpc-k8s-") as directory:
        started = time.monotonic()
        # Ctrl-C while it starts raises KeyboardInterrupt, and __enter__ stops what had started.
        with ControlPlane(Path(directory)) as plane:
            # Set explicitly: a process started in the background (nohup, &) inherits SIGINT ignored.
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
            print(
                f"Kubernetes control plane up in {time.monotonic() - started:.1f} s"
                f" (one simulated node, {NODE}).\n"
                f"  export KUBECONFIG={plane.kubeconfig}\n"
                "  helm install rpc charts/kafka-rpc-gateway --wait"
                " --set kafka.bootstrapServers=kafka:9092 --set gateway.auth.mode=none\n"
                f"Logs: {plane.logs}. Ctrl-C stops it and deletes everything.",
                flush=True,
            )
            wait_in_slices(stopping.wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
