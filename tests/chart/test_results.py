"""Streamed replies and `Prefer: respond-async`: their settings, and the result key's Secret."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.locations import MIN_KEY_BYTES, ResultHandle, ResultLocations, signing_key
from gateway.settings import GatewaySettings

from .conftest import CHART, RELEASE, Helm, Manifests, with_kafka
from .test_workloads import container, settings_from

GENERATED = f"{RELEASE}-kafka-rpc-gateway-result-key"
STREAM_AND_ASYNC = {
    "replyStreamIdleTimeout": "reply_stream_idle_timeout",
    "replyStreamMaxDuration": "reply_stream_max_duration",
    "replyStreamBuffer": "reply_stream_buffer",
    "asyncTimeout": "async_timeout",
    "resultTtl": "result_ttl",
}
OWN_SECRET = {"gateway": {"results": {"keySecret": "rpc-result-key", "keySecretKey": "hmac"}}}
# How liveResultKey asks the cluster for the chart's own Secret; a test copy answers it instead.
LOOKUP = 'lookup "v1" "Secret" .Release.Namespace (include "kafka-rpc-gateway.resultKeySecretName" .)'
LIVE_KEY = "k3pt-across-upgrades-0123456789abcdefghijklmnop"


def env_of(manifests: Manifests, component: str) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(manifests.deployment(component)).get("env", [])}


def key_ref(manifests: Manifests) -> tuple[str, str]:
    ref = env_of(manifests, "gateway")["GATEWAY_RESULT_KEY"]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_stream_and_async_defaults_are_the_apps(default: Manifests, monkeypatch: pytest.MonkeyPatch):
    config = default.config()
    gateway, _, _ = settings_from(config, monkeypatch)
    for value, field in STREAM_AND_ASYNC.items():
        assert f"GATEWAY_{field.upper()}" in config, value
        assert getattr(gateway, field) == GatewaySettings.model_fields[field].default


def test_stream_and_async_settings_reach_the_gateway(everything: Manifests, monkeypatch: pytest.MonkeyPatch):
    gateway, _, _ = settings_from(everything.config(), monkeypatch)
    assert gateway.reply_stream_idle_timeout == 45
    assert gateway.reply_stream_max_duration == 900
    assert gateway.reply_stream_buffer == 500
    assert gateway.async_timeout == 3600
    assert gateway.result_ttl == 7200
    assert gateway.result_readers == 8
    assert gateway.result_scan_limit == 200_000
    assert gateway.result_key is None  # from the Secret, never the ConfigMap


def test_async_timeout_above_the_apps_bound_is_refused(helm: Helm):
    bound = next(m.le for m in GatewaySettings.model_fields["async_timeout"].metadata if hasattr(m, "le"))
    helm.render(with_kafka({"gateway": {"settings": {"asyncTimeout": bound}}}))
    error = helm.render_error(with_kafka({"gateway": {"settings": {"asyncTimeout": bound + 1}}}))
    assert "at '/gateway/settings/asyncTimeout'" in error


@pytest.mark.parametrize("values", [{}, OWN_SECRET], ids=["generated", "own"])
def test_result_key_comes_from_a_secret_never_the_configmap(helm: Helm, values: dict[str, Any]):
    manifests = helm.render(with_kafka(values))
    assert not any(key.startswith("GATEWAY_RESULT_KEY") for key in manifests.config())
    assert set(env_of(manifests, "gateway")["GATEWAY_RESULT_KEY"]) == {"name", "valueFrom"}
    assert "GATEWAY_RESULT_KEY" not in env_of(manifests, "worker")


def test_chart_generates_a_key_secret_when_none_is_named(default: Manifests, monkeypatch: pytest.MonkeyPatch):
    secret = default.one("Secret")
    assert secret["metadata"]["name"] == GENERATED
    assert key_ref(default) == (GENERATED, "key")
    key = base64.b64decode(secret["data"]["key"]).decode()
    assert len(key) == 48
    assert key.isalnum()
    # The gateway accepts it: long enough to sign, and it signs and verifies a location.
    monkeypatch.setenv("GATEWAY_RESULT_KEY", key)
    signing = signing_key(GatewaySettings())
    assert len(signing) >= MIN_KEY_BYTES
    locations = ResultLocations(signing, ttl=60)
    handle = ResultHandle(0, 42, "0" * 32, None, 4_102_444_800_000)
    assert locations.handle(locations.token(handle)) == handle


def test_named_secret_replaces_the_generated_one(helm: Helm, everything: Manifests):
    manifests = helm.render(with_kafka(OWN_SECRET))
    assert "Secret" not in manifests.kinds()
    assert key_ref(manifests) == ("rpc-result-key", "hmac")
    assert key_ref(everything) == ("rpc-result-key", "hmac")
    tracing = ("OTEL_", "K8S_")  # tracing is on there too (tests/chart/test_tracing.py)
    names = [name for name in env_of(everything, "gateway") if not name.startswith(tracing)]
    assert names == ["GATEWAY_RESULT_KEY", "EXTRA_FROM_SECRET"]


@pytest.fixture(scope="module")
def upgraded_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart whose lookup finds the chart's Secret already holding LIVE_KEY."""
    copy = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, copy)
    helpers = copy / "templates" / "_results.tpl"
    text = helpers.read_text()
    assert text.count(LOOKUP) == 1
    live = base64.b64encode(LIVE_KEY.encode()).decode()
    helpers.write_text(text.replace(LOOKUP, f'dict "data" (dict "key" "{live}")'))
    return copy


def test_generated_key_survives_upgrades(helm: Helm, upgraded_chart: Path):
    for values in (with_kafka(), with_kafka({"gateway": {"replicaCount": 3}})):
        secret = helm.render(values, chart=upgraded_chart).one("Secret")
        assert base64.b64decode(secret["data"]["key"]).decode() == LIVE_KEY


def test_result_key_in_settings_or_extra_env_fails(helm: Helm):
    error = helm.render_error(with_kafka({"gateway": {"settings": {"resultKey": "s3cr3t-value"}}}))
    assert "gateway.settings.resultKey would land in the ConfigMap" in error
    assert "s3cr3t-value" not in error
    extra = [{"name": "GATEWAY_RESULT_KEY", "value": "s3cr3t-value"}]
    error = helm.render_error(with_kafka({"gateway": {"extraEnv": extra}}))
    assert "gateway.extraEnv sets GATEWAY_RESULT_KEY" in error
