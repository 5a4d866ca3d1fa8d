"""`helm install` of the chart on a real control plane, into namespaces enforcing the restricted
Pod Security Standard.

What this proves: the API server accepts every object (built-in kinds and, once their CRDs exist,
the custom ones), PodSecurity admission passes the Pods the Deployments' ReplicaSets create, the
scheduler places them, the controllers roll and scale them, and helm's release bookkeeping
(upgrade, rollback, uninstall) holds. What it cannot: the kwok node reports Pods Running and
Ready without running a container, so probes, the image and ``helm test`` prove nothing here.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..chart.conftest import CHART
from .conftest import RELEASE, Kube, Release, eventually, ready

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


def leftovers(kube: Kube, namespace: str) -> list[str]:
    """Every object in ``namespace`` that carries the release's instance label, of any kind."""
    found = []
    for (_, kind), (collection, namespaced) in kube.resources().items():
        if not namespaced or kind == "Event":
            continue
        group, _, plural = collection.rpartition("/")
        path = f"{group}/namespaces/{namespace}/{plural}"
        for item in kube.items(path, {"app.kubernetes.io/instance": RELEASE}):
            found.append(f"{kind}/{item['metadata']['name']}")
    return found


def test_the_defaults_install_into_a_restricted_namespace(release: Release, kube: Kube) -> None:
    result = release.install()
    # Warnings are how PodSecurity reports a Deployment whose Pods it would refuse, and how the
    # API server reports fields it drops: there are none.
    assert "Warning" not in result.stderr, result.stderr
    for doc in release.manifest():
        assert kube.get(kube.path(doc, release.namespace)) is not None, (
            f"{doc['kind']} {doc['metadata']['name']}"
        )
    for component in COMPONENTS:
        assert release.deployment(component)["spec"]["replicas"] == 2
        pods = eventually(f"2 {component} Pods Ready", partial(pods_ready, release, component, 2))
        for pod in pods:
            assert pod["spec"]["nodeName"] == "kwok-node-0"
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
    release.install(
        {
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            "worker": {"keda": {"enabled": True}},
        }
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
    # runs, so it goes no further): proof that scaleTargetRef names the gateway Deployment.
    (hpa,) = (doc for doc in manifest if doc["kind"] == "HorizontalPodAutoscaler")
    gateway = release.deployment("gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    minimum = hpa["spec"]["minReplicas"]
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


def test_upgrade_rolls_the_pods_and_rollback_restores_them(release: Release, kube: Kube) -> None:
    namespace = release.namespace
    configmap = f"/api/v1/namespaces/{namespace}/configmaps/{RELEASE}-kafka-rpc-gateway-env"
    release.install()
    first = release.deployment("gateway")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    before = eventually("2 gateway Pods Ready", lambda: replaced(release, "gateway", set()))

    release.upgrade({"gateway": {"settings": {"defaultTimeout": 20}}})
    config = kube.get(configmap)
    assert config is not None
    assert config["data"]["GATEWAY_DEFAULT_TIMEOUT"] == "20"
    second = release.deployment("gateway")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert second != first
    upgraded = eventually("the gateway rolled to new Pods", lambda: replaced(release, "gateway", before))

    release.helm.ok("rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", "60s")
    config = kube.get(configmap)
    assert config is not None
    assert config["data"]["GATEWAY_DEFAULT_TIMEOUT"] != "20"
    assert (
        release.deployment("gateway")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        == first
    )
    eventually("the gateway rolled again to new Pods", lambda: replaced(release, "gateway", upgraded))
    history = release.helm.ok("history", RELEASE, "--namespace", namespace, "-o", "json").stdout
    assert '"revision":3' in history.replace(" ", "")

    release.helm.ok("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "60s")
    eventually("nothing of the release left", lambda: not leftovers(kube, namespace))
    secrets = kube.items(f"/api/v1/namespaces/{namespace}/secrets", {"owner": "helm", "name": RELEASE})
    assert secrets == []
