"""`helm install` of the chart on a real control plane, into namespaces enforcing the restricted
Pod Security Standard.

What this proves: the API server accepts every object (built-in kinds and, once their CRDs exist,
the custom ones), PodSecurity admission passes the Pods the Deployments' ReplicaSets create, the
scheduler places them, the controllers roll and scale them, and helm's release bookkeeping
(upgrade, rollback, uninstall) holds. What it cannot: the kwok node reports Pods Running and
Ready without running a container, so probes, the image and ``helm test`` prove nothing here.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import yaml

from devstack.controlplane import NODE

from ..chart.conftest import CHART
from .conftest import RELEASE, WAIT, Kube, Release, eventually, ready, within

ALL_FEATURES = "all-features-values.yaml"
COMPONENTS = ("gateway", "worker")


def pods_ready(release: Release, component: str, count: int) -> list[dict[str, Any]] | None:
    """The component's Pods once exactly ``count`` exist and all are Ready."""
    pods = release.pods(component)
    return pods if len(pods) == count and all(ready(pod) for pod in pods) else None


def counts_ready(release: Release, component: str, count: int) -> bool:
    """Whether the Deployment's status, as its controller writes it, counts ``count`` ready."""
    return bool(release.deployment(component)["status"].get("readyReplicas") == count)


def replaced(release: Release, component: str, old: set[str]) -> set[str] | None:
    """The names of the component's 2 Ready Pods once none of them is one of ``old``."""
    pods = pods_ready(release, component, 2)
    names = {pod["metadata"]["name"] for pod in pods or ()}
    return names if pods and not names & old else None


def labelled(kube: Kube, namespace: str) -> set[str]:
    """``Kind/name`` of every object in ``namespace`` that carries the release's instance label,
    of every namespaced kind the server serves now (the chart makes no cluster-wide object)."""
    found = set()
    for (_, kind), (collection, namespaced) in kube.resources().items():
        if namespaced and kind != "Event":
            for item in kube.items(within(collection, namespace), {"app.kubernetes.io/instance": RELEASE}):
                found.add(f"{kind}/{item['metadata']['name']}")
    return found


def _none_labelled(kube: Kube, namespace: str) -> bool:
    return not labelled(kube, namespace)


def release_secrets(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    """helm's record of the release: one Secret per revision."""
    return kube.items(f"/api/v1/namespaces/{namespace}/secrets", {"owner": "helm", "name": RELEASE})


def uninstall_leaves_nothing(release: Release, kube: Kube, revisions: int) -> None:
    """``helm uninstall --wait``, then no object of the release and no record of it is left."""
    namespace = release.namespace
    # The check below can see what it looks for: before, it finds every object of the manifest.
    before = labelled(kube, namespace)
    assert {f"{doc['kind']}/{doc['metadata']['name']}" for doc in release.manifest()} <= before
    assert len(release_secrets(kube, namespace)) == revisions
    release.helm.ok("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", f"{WAIT:.0f}s")
    # Pods, ReplicaSets and EndpointSlices go by the garbage collector, after helm returns.
    # Each check lists every kind the server serves: once a second is plenty.
    gone = partial(_none_labelled, kube, namespace)
    eventually(f"nothing of the release left of {sorted(before)}", gone, interval=1.0)
    assert release_secrets(kube, namespace) == []


def annotation(release: Release, component: str) -> str:
    """The Deployment's pod-template checksum of the chart's configuration."""
    checksum: str = release.deployment(component)["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"
    ]
    return checksum


def test_the_defaults_install_into_a_restricted_namespace(release: Release, kube: Kube) -> None:
    result = release.install()
    # Warnings are how PodSecurity reports a Deployment whose Pods it would refuse, and how the
    # API server reports fields it drops: there are none.
    assert "Warning" not in result.stderr, result.stderr
    manifest = release.manifest()
    kinds = {doc["kind"] for doc in manifest}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    for doc in manifest:
        assert kube.get(kube.path(doc, release.namespace)) is not None, (
            f"{doc['kind']} {doc['metadata']['name']}"
        )
    # `helm test`'s Pod is not created by an install: admission checks it in a server-side dry run.
    hooks = [
        doc
        for doc in yaml.safe_load_all(
            release.helm.ok("get", "hooks", RELEASE, "-n", release.namespace).stdout
        )
        if doc
    ]
    assert [doc["kind"] for doc in hooks] == ["Pod"]
    response = kube.api.post(
        f"/api/v1/namespaces/{release.namespace}/pods", params={"dryRun": "All"}, json=hooks[0]
    )
    assert response.status_code == 201, response.text
    assert "warning" not in response.headers
    for component in COMPONENTS:
        assert release.deployment(component)["spec"]["replicas"] == 2
        pods = eventually(f"2 {component} Pods Ready", partial(pods_ready, release, component, 2))
        for pod in pods:
            assert pod["spec"]["nodeName"] == NODE
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
            assert pod["spec"]["automountServiceAccountToken"] is False
        eventually(f"the {component} Deployment counts 2 ready", partial(counts_ready, release, component, 2))


def test_a_weakened_security_context_is_refused(release: Release, kube: Kube) -> None:
    # The check is live: the same chart with privilege escalation allowed gets no Pod at all.
    result = release.install({"securityContext": {"allowPrivilegeEscalation": True}}, wait=False)
    # helm prints the API server's warning (with its quotes escaped)...
    assert "would violate PodSecurity" in result.stderr
    assert "allowPrivilegeEscalation != false" in result.stderr
    namespace = release.namespace

    def refused() -> str | None:
        for replica_set in kube.items(f"/apis/apps/v1/namespaces/{namespace}/replicasets"):
            for condition in replica_set.get("status", {}).get("conditions", []):
                if condition["type"] == "ReplicaFailure" and "violates PodSecurity" in condition["message"]:
                    return str(condition["message"])
        return None

    # ...and admission refuses the Pods themselves.
    message = eventually("a ReplicaSet refused its Pods", refused)
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in message
    assert release.pods("gateway") == release.pods("worker") == []


def test_optional_objects_are_skipped_without_their_crds(release: Release, kube: Kube) -> None:
    assert not kube.served("monitoring.coreos.com")
    assert not kube.served("keda.sh")
    result = release.install(
        {
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            "worker": {"keda": {"enabled": True}},
        }
    )
    # NOTES.txt, printed by the install, tells the user what was left out.
    assert "WARNING: ServiceMonitor was requested but the cluster does not serve" in result.stdout
    assert (
        "WARNING: worker.keda.enabled is set but the cluster does not serve keda.sh/v1alpha1" in result.stdout
    )
    kinds = {doc["kind"] for doc in release.manifest()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
    # With no KEDA to scale them, the workers keep their fixed count.
    assert release.deployment("worker")["spec"]["replicas"] == 2


def test_every_option_installs_once_the_crds_exist(release: Release, kube: Kube, crds: list[str]) -> None:
    namespace = release.namespace
    # Capabilities come from the cluster here, not from the file's apiVersions list.
    result = release.install({"apiVersions": []}, files=(CHART / "ci" / ALL_FEATURES,))
    # The API server warns of every field it does not know and drops (helm prints the warnings):
    # none, so each custom resource means to its operator exactly what the chart wrote.
    assert "Warning" not in result.stderr, result.stderr
    assert "Workers are scaled by a KEDA ScaledObject" in result.stdout
    manifest = release.manifest()
    kinds = {doc["kind"] for doc in manifest}
    expected = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
    expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress"}
    assert expected <= kinds
    for doc in manifest:
        assert kube.get(kube.path(doc, namespace)) is not None, f"{doc['kind']} {doc['metadata']['name']}"

    # The scaled object points at the worker Deployment; nothing else scales it.
    scaled = next(doc for doc in manifest if doc["kind"] == "ScaledObject")
    worker = release.deployment("worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert (
        "replicas"
        not in next(
            doc
            for doc in manifest
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] == worker["metadata"]["name"]
        )["spec"]
    )

    # The real HPA controller finds its target and scales it to minReplicas (no metrics server
    # runs, so it goes no further): proof that scaleTargetRef names the gateway Deployment,
    # which the chart leaves at the API server's default of 1 replica.
    (hpa,) = (doc for doc in manifest if doc["kind"] == "HorizontalPodAutoscaler")
    gateway = release.deployment("gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    minimum = hpa["spec"]["minReplicas"]
    assert minimum > 1
    eventually(
        f"the HPA scales the gateway to {minimum}",
        lambda: release.deployment("gateway")["spec"].get("replicas") == minimum,
    )
    eventually(f"{minimum} gateway Pods Ready", lambda: pods_ready(release, "gateway", minimum))

    # The disruption controller counts each PDB's Pods: each selects exactly its component's.
    for component in COMPONENTS:
        (pdb,) = (
            doc
            for doc in manifest
            if doc["kind"] == "PodDisruptionBudget"
            and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
        )
        path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{pdb['metadata']['name']}"
        count = len(release.pods(component))

        def counted(path: str = path, count: int = count) -> bool:
            status = (kube.get(path) or {}).get("status", {})
            return bool(status.get("expectedPods") == count and count > 0)

        eventually(f"PDB {pdb['metadata']['name']} counts {count} Pods", counted)

    uninstall_leaves_nothing(release, kube, revisions=1)


def test_upgrade_rolls_the_pods_and_rollback_restores_them(release: Release, kube: Kube) -> None:
    namespace = release.namespace
    configmap = f"/api/v1/namespaces/{namespace}/configmaps/{RELEASE}-kafka-rpc-gateway-env"
    release.install()
    original = (kube.get(configmap) or {})["data"]
    first = annotation(release, "gateway")
    before = eventually("2 gateway Pods Ready", lambda: replaced(release, "gateway", set()))

    release.upgrade({"gateway": {"settings": {"defaultTimeout": 20}}})
    assert (kube.get(configmap) or {})["data"] == {**original, "GATEWAY_DEFAULT_TIMEOUT": "20"}
    assert original["GATEWAY_DEFAULT_TIMEOUT"] != "20"
    assert annotation(release, "gateway") != first
    upgraded = eventually("the gateway rolled to new Pods", lambda: replaced(release, "gateway", before))

    release.helm.ok("rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", f"{WAIT:.0f}s")
    assert (kube.get(configmap) or {})["data"] == original
    assert annotation(release, "gateway") == first
    eventually("the gateway rolled again to new Pods", lambda: replaced(release, "gateway", upgraded))
    history = json.loads(release.helm.ok("history", RELEASE, "--namespace", namespace, "-o", "json").stdout)
    assert [entry["revision"] for entry in history] == [1, 2, 3]
    assert history[-1]["status"] == "deployed"
    assert history[-1]["description"] == "Rollback to 1"

    uninstall_leaves_nothing(release, kube, revisions=3)
