"""Render the chart with the real helm binary (built by tools/helm.sh) and hand out manifests.

No cluster is involved: ``helm template`` renders with the capabilities passed in
(``--kube-version``, ``--api-versions``). If helm cannot be built, every chart test fails.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kafka-rpc-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "rpc"
NAMESPACE = "apps"
# Oldest and newest Kubernetes minors rendered: 1.29 takes the exec preStop branch, 1.30+ the
# native sleep action. kubernetes-validate bundles schemas for both.
KUBE_VERSIONS = ("1.29.0", "1.37.0")
DEFAULT_KUBE = KUBE_VERSIONS[-1]
BOOTSTRAP = "kafka-bootstrap.kafka.svc:9092"


class RenderError(Exception):
    """helm refused to render; the message is helm's stderr."""


@dataclass(frozen=True)
class Manifests:
    """The documents one ``helm template`` produced."""

    docs: list[dict[str, Any]]

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            doc
            for doc in self.all(kind)
            if component is None or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
        return found[0]

    def deployment(self, component: str) -> dict[str, Any]:
        return self.one("Deployment", component)

    def config(self) -> dict[str, str]:
        """The environment ConfigMap's data (the dashboard, when on, is another ConfigMap)."""
        (env,) = [doc for doc in self.all("ConfigMap") if doc["metadata"]["name"].endswith("-env")]
        data: dict[str, str] = env["data"]
        return data


class Helm:
    """The helm binary, with renders cached per arguments (rendering is pure)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._cache: dict[tuple[Any, ...], Manifests] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=120, check=False)

    def render(
        self,
        values: dict[str, Any] | None = None,
        *,
        files: Sequence[Path] = (),
        kube_version: str = DEFAULT_KUBE,
        api_versions: Sequence[str] = (),
        chart: Path = CHART,
        show_only: str | None = None,
    ) -> Manifests:
        """``helm template``; ``values`` are merged over the files (as one more -f file)."""
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", kube_version]
        for path in files:
            args += ["-f", str(path)]
        for api in api_versions:
            args += ["--api-versions", api]
        if show_only:
            args += ["--show-only", show_only]
        if values is not None:
            args += ["-f", "-"]
        key = (repr(values), *args)
        if key not in self._cache:
            self._cache[key] = Manifests(self._render(args, values))
        return self._cache[key]

    def _render(self, args: list[str], values: dict[str, Any] | None) -> list[dict[str, Any]]:
        result = subprocess.run(
            [self.binary, *args],
            input=yaml.safe_dump(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RenderError(result.stderr.strip())
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def render_error(self, values: dict[str, Any], **kwargs: Any) -> str:
        """helm's error for values that must be refused."""
        with pytest.raises(RenderError) as caught:
            self.render(values, **kwargs)
        return str(caught.value)


def built_helm() -> Helm:
    """The real helm binary from tools/helm.sh; building it is part of the check, so a failure
    fails the test asking for it (never skips)."""
    script = REPO / "tools" / "helm.sh"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        pytest.fail(f"tools/helm.sh could not provide helm:\n{result.stderr[-3000:]}", pytrace=False)
    return Helm(result.stdout.strip())


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The real helm binary (`built_helm`)."""
    return built_helm()


REQUIRED: dict[str, Any] = {"kafka": {"bootstrapServers": BOOTSTRAP}, "gateway": {"auth": {"mode": "none"}}}
"""The values `helm install` cannot do without."""


def with_kafka(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Values with the required settings (`REQUIRED`), merged with ``values`` (dictionaries merged deeply)."""
    return _merged(REQUIRED, values or {})


def _merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture(scope="session")
def default(helm: Helm) -> Manifests:
    """The chart's defaults plus kafka.bootstrapServers: what a newcomer installs."""
    return helm.render(with_kafka())


@pytest.fixture(scope="session")
def everything(helm: Helm) -> Manifests:
    """Every optional feature on (ci/all-features-values.yaml)."""
    return helm.render(files=[CHART / "ci" / "all-features-values.yaml"])


@pytest.fixture(scope="session")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart that renders NOTES.txt as a document.

    ``helm template`` skips NOTES.txt and ``helm install --dry-run`` needs a reachable cluster in
    Helm 3, so the copy wraps NOTES.txt in a named template and emits it under a ``notes`` key.
    """
    copy = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, copy)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes-under-test" -}}\n' + notes + "\n{{- end }}\n"
    )
    (copy / "templates" / "notes-under-test.yaml").write_text(
        'kind: Notes\nnotes: |\n  {{- include "notes-under-test" . | nindent 2 }}\n'
    )
    return copy
