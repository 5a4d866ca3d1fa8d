"""A real Kubernetes control plane for the chart's install tests (`devstack.controlplane`).

`cluster` is one control plane per test run: the real etcd, API server (PodSecurity admission
on), controller manager and scheduler, and one kwok node that reports Pods Running and Ready
without running their containers. `namespace` is a fresh namespace that enforces the
``restricted`` Pod Security Standard; `release` installs the chart into it with the real helm.
If the control plane cannot be built or started, every test here fails (never skips).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from devstack.controlplane import ControlPlane
from devstack.errors import LocalKafkaError
from devstack.probes import NotReadyError, poll

from ..chart.conftest import CHART, built_helm, with_kafka

T = TypeVar("T")
RELEASE = "rpc"
WAIT = 60.0
"""Seconds a test waits for the controllers to act (they take well under 5 s here)."""
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
"""Namespace labels that make PodSecurity admission refuse Pods below the restricted standard."""


def eventually(what: str, probe: Callable[[], T | None], timeout: float = WAIT, interval: float = 0.2) -> T:
    """Poll ``probe`` every ``interval`` seconds until it returns something true, and return it;
    fail the test naming ``what`` after ``timeout`` seconds."""
    try:
        return poll(what, probe, timeout, interval)
    except NotReadyError as error:
        pytest.fail(str(error), pytrace=False)


class Kube:
    """The API server as its administrator, with kinds resolved through discovery."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api

    def resources(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """(apiVersion, kind) -> (collection path without namespace, namespaced), for every
        listable resource the server serves now (custom resources included)."""
        found: dict[tuple[str, str], tuple[str, bool]] = {}
        versions = ["v1"] + [
            version["groupVersion"]
            for group in self.api.get("/apis").raise_for_status().json()["groups"]
            for version in group["versions"]
        ]
        for version in versions:
            base = "/api/v1" if version == "v1" else f"/apis/{version}"
            for resource in self.api.get(base).raise_for_status().json()["resources"]:
                if "/" not in resource["name"] and "list" in resource["verbs"]:
                    found[(version, resource["kind"])] = (
                        f"{base}/{resource['name']}",
                        resource["namespaced"],
                    )
        return found

    def path(self, doc: dict[str, Any], namespace: str) -> str:
        """The URL path of one object."""
        collection, namespaced = self.resources()[(doc["apiVersion"], doc["kind"])]
        if namespaced:
            collection = within(collection, doc["metadata"].get("namespace", namespace))
        return f"{collection}/{doc['metadata']['name']}"

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if there is none."""
        response = self.api.get(path)
        if response.status_code == 404:
            return None
        result: dict[str, Any] = response.raise_for_status().json()
        return result

    def items(self, path: str, selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The objects of a collection, optionally those matching ``selector``'s labels."""
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())} if selector else {}
        items: list[dict[str, Any]] = self.api.get(path, params=params).raise_for_status().json()["items"]
        return items

    def served(self, group: str) -> bool:
        """Whether the server serves an API group (e.g. ``keda.sh``)."""
        groups = self.api.get("/apis").raise_for_status().json()["groups"]
        return any(entry["name"] == group for entry in groups)


def within(collection: str, namespace: str) -> str:
    """A namespaced collection's path in ``namespace``: /api/v1/pods -> /api/v1/namespaces/<ns>/pods."""
    group, _, plural = collection.rpartition("/")
    return f"{group}/namespaces/{namespace}/{plural}"


class Helm:
    """The real helm (tools/helm.sh) pointed at the control plane."""

    def __init__(self, binary: str, plane: ControlPlane) -> None:
        self.binary = binary
        self.kubeconfig = plane.kubeconfig
        # helm's and client-go's caches and settings go with the control plane, not into ~/.kube
        # and ~/.cache (each run's API server has a new port, hence new cache entries).
        home = plane.directory / "helm"
        self.env = {
            **os.environ,
            "KUBECACHEDIR": str(home / "kube-cache"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        """``helm <args>``; ``values`` go in as one more ``-f`` file (after any in ``args``)."""
        command = [self.binary, "--kubeconfig", str(self.kubeconfig), *args]
        if values is not None:
            command += ["-f", "-"]
        return subprocess.run(
            command,
            input=yaml.safe_dump(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=self.env,
        )

    def ok(self, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        """`run`, failing the test with helm's own words if it fails."""
        result = self.run(*args, values=values)
        if result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
        return result


class Release:
    """The chart as one release (`RELEASE`) in one namespace."""

    def __init__(self, helm: Helm, kube: Kube, namespace: str) -> None:
        self.helm = helm
        self.kube = kube
        self.namespace = namespace

    def install(
        self, values: dict[str, Any] | None = None, *, files: tuple[Path, ...] = (), wait: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``helm install`` with ``values`` over ``files``; with no files, over `REQUIRED`."""
        args = ["install", RELEASE, str(CHART), "--namespace", self.namespace]
        for path in files:
            args += ["-f", str(path)]
        if wait:
            args += ["--wait", "--timeout", f"{WAIT:.0f}s"]
        return self.helm.ok(*args, values=values if files else with_kafka(values))

    def upgrade(self, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """``helm upgrade --reuse-values --wait`` with ``values`` over the current ones."""
        args = ["upgrade", RELEASE, str(CHART), "--namespace", self.namespace, "--reuse-values"]
        return self.helm.ok(*args, "--wait", "--timeout", f"{WAIT:.0f}s", values=values)

    def manifest(self) -> list[dict[str, Any]]:
        """The objects of the release's current revision."""
        text = self.helm.ok("get", "manifest", RELEASE, "--namespace", self.namespace).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The component's Pods that are not being deleted."""
        selector = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": component}
        pods = self.kube.items(f"/api/v1/namespaces/{self.namespace}/pods", selector)
        return [pod for pod in pods if "deletionTimestamp" not in pod["metadata"]]

    def deployment(self, component: str) -> dict[str, Any]:
        """The component's Deployment as the cluster has it now."""
        name = f"{RELEASE}-kafka-rpc-gateway-{component}"
        found = self.kube.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}")
        assert found is not None, f"no Deployment {name}"
        return found


def ready(pod: dict[str, Any]) -> bool:
    """Whether a Pod is Running and Ready (as the kwok node reports it)."""
    conditions = pod.get("status", {}).get("conditions", [])
    return pod.get("status", {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane for these tests (stopped before the rest of the suite runs); one
    that cannot start fails them (never a skip)."""
    failure = None
    try:
        # If start-up fails, the context stops whatever had started.
        with ControlPlane(tmp_path_factory.mktemp("kubernetes")) as plane:
            yield plane
    except LocalKafkaError as error:
        failure = str(error)
    if failure is not None:  # failed outside the except block: no "during handling" chain
        pytest.fail(f"the Kubernetes control plane did not start: {failure}", pytrace=False)


@pytest.fixture(scope="package")
def kube(cluster: ControlPlane) -> Kube:
    """The API server as the administrator."""
    return Kube(cluster.api)


@pytest.fixture(scope="package")
def helm(cluster: ControlPlane) -> Helm:
    """helm with the control plane's kubeconfig."""
    return Helm(built_helm().binary, cluster)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A new namespace enforcing the restricted Pod Security Standard, deleted afterwards."""
    name = f"apps-{uuid.uuid4().hex[:8]}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
    kube.api.post("/api/v1/namespaces", json=manifest).raise_for_status()
    # The service-account controller gives every namespace `default`; Pods wait for it.
    eventually(
        f"service account default in {name}",
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
    )
    yield name
    kube.api.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def release(helm: Helm, kube: Kube, namespace: str) -> Release:
    """The chart as release `RELEASE` in `namespace`."""
    return Release(helm, kube, namespace)


@pytest.fixture
def crds(cluster: ControlPlane, kube: Kube) -> Iterator[list[str]]:
    """The prometheus-operator's and KEDA's CRDs (from their Go modules, via tools/kubernetes.sh),
    created and served for one test, then deleted until the API no longer serves them."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names: list[str] = []
    try:
        # Each file is one CRD. Sent as YAML, as the projects ship them: the API server parses it
        # (PyYAML cannot: a YAML 1.1 value tag in the prometheus-operator's schemas trips it).
        for file in sorted((cluster.programs / "crds").glob("*.yaml")):
            response = kube.api.post(
                path, content=file.read_bytes(), headers={"Content-Type": "application/yaml"}
            )
            assert response.status_code == 201, f"{file.name}: {response.text}"
            names.append(response.json()["metadata"]["name"])
        # Established, then in discovery (which follows asynchronously): what helm reads.
        for name in names:
            eventually(f"CRD {name} Established", partial(_established, kube, f"{path}/{name}"))
        for group in GROUPS:
            eventually(f"{group} served", partial(kube.served, group))
        yield names
    finally:
        for name in names:
            kube.api.delete(f"{path}/{name}").raise_for_status()
        for group in GROUPS:
            eventually(f"{group} no longer served", partial(_gone, kube, group))


GROUPS = ("monitoring.coreos.com", "keda.sh")
AS_YAML = {"Content-Type": "application/yaml"}


def _gone(kube: Kube, group: str) -> bool:
    return not kube.served(group)


def _established(kube: Kube, path: str) -> bool:
    found = kube.get(path)
    conditions = found.get("status", {}).get("conditions", []) if found else []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
