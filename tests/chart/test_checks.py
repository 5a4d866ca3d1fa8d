"""The checks CI runs: helm lint, helm template per values file, strict schema validation."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from .conftest import CHART, CI_VALUES, KUBE_VERSIONS, Helm, Manifests, with_kafka
from .crd_schemas import SCHEMAS

CUSTOM_API_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


def validate(doc: dict[str, Any], kube_version: str) -> None:
    """Strict schema validation: built-in kinds by kubernetes-validate, CRDs by crd_schemas."""
    if doc["apiVersion"].startswith(CUSTOM_API_GROUPS):
        jsonschema.Draft7Validator(SCHEMAS[doc["kind"]]).validate(doc)
    else:
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_ci_values_files_exist():
    assert {path.name for path in CI_VALUES} >= {"default-values.yaml", "all-features-values.yaml"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda path: path.name)
def test_lint_strict(helm: Helm, values_file: Path):
    result = helm.run("lint", "--strict", str(CHART), "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_without_bootstrap_servers_fails_with_the_fix(helm: Helm):
    # helm lint reports a template `fail` only as [INFO]; template and install stop on it.
    error = helm.render_error({})
    assert "kafka.bootstrapServers is required, e.g. --set kafka.bootstrapServers=" in error


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda path: path.name)
def test_every_manifest_is_valid(helm: Helm, values_file: Path, kube_version: str):
    manifests = helm.render(files=[values_file], kube_version=kube_version)
    assert manifests.docs
    for doc in manifests.docs:
        validate(doc, kube_version)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_is_valid_with_defaults(helm: Helm, kube_version: str):
    for doc in helm.render(with_kafka(), kube_version=kube_version).docs:
        validate(doc, kube_version)


def test_all_features_renders_every_kind(everything: Manifests):
    assert set(everything.kinds()) == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "TriggerAuthentication",
    }


def test_strict_validation_rejects_an_unknown_field(default: Manifests):
    """The validator is not a rubber stamp: a misspelt field fails."""
    deployment = copy.deepcopy(default.deployment("gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBE_VERSIONS[-1])


def test_crd_validation_rejects_an_unknown_field(everything: Manifests):
    monitor = copy.deepcopy(everything.all("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, KUBE_VERSIONS[-1])


def test_default_values_match_ci_default_file(helm: Helm, default: Manifests):
    rendered = helm.render(files=[CHART / "ci" / "default-values.yaml"])
    assert rendered.kinds() == default.kinds()


# Probes, resources and security contexts are documented as one row each.
DOCUMENTED_AS_ONE = {"livenessProbe", "readinessProbe", "startupProbe", "resources", "podSecurityContext"}
DOCUMENTED_AS_ONE |= {"securityContext"}


def value_keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in DOCUMENTED_AS_ONE:
            keys += value_keys(value, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_readme_documents_every_value_with_its_default():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = {
        cells[0].removeprefix("| ").strip("`"): cells[1].strip()
        for line in (CHART / "README.md").read_text().splitlines()
        if line.startswith("| `") and len(cells := line.split(" | ")) >= 3
    }
    keys = value_keys(values)
    assert len(keys) > 100
    for key in keys:
        assert key in rows, f"{key} is missing from the README values table"
        default = functools.reduce(lambda node, part: node[part], key.split("."), values)
        documented = rows[key].strip("`")
        expected = (
            f'"{default}"' if isinstance(default, str) else json.dumps(default, separators=(", ", ": "))
        )
        assert documented.replace("\\|", "|") == expected, f"README default of {key}"
