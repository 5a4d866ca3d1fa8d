"""The chart's alert rules through the real promtool, at the chart's default thresholds.

``promtool check rules`` parses them as Prometheus will; ``promtool test rules`` evaluates
them over synthetic series (one sample a minute) and compares the alerts that fire, with
all their labels and annotations, to what each test expects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import errors

from ..chart.conftest import NAMESPACE, REPO, Helm, Manifests, with_kafka
from .configuration import MONITORING_API, monitoring_values, rule_file
from .conftest import SCRAPE_INTERVAL
from .prometheus import Binaries

GATEWAY = "rpc-kafka-rpc-gateway-gateway"
WORKER = "rpc-kafka-rpc-gateway-worker"
GROUP, TOPIC = "rpc-workers", "requests"
GATEWAY_POD = f'namespace="{NAMESPACE}", pod="{GATEWAY}-6b8d9c7f5-x2x7q", job="{GATEWAY}"'
WORKER_PODS = [
    f'namespace="{NAMESPACE}", pod="{WORKER}-7c4f8d6b9-{n}", job="{WORKER}"' for n in ("a1b2c", "d3e4f")
]
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
DEFAULT_RUNBOOK_URL = "https://github.com/kafka-rpc-gateway/kafka-rpc-gateway/blob/main/docs/RUNBOOK.md"


def series(name: str, labels: str, values: str) -> dict[str, str]:
    """An input series of a promtool test; ``values`` in its expanding notation ('0+60x30')."""
    return {"series": f"{name}{{{labels}}}", "values": values}


def calls(method: str, outcome: str, per_minute: int, labels: str = GATEWAY_POD) -> dict[str, str]:
    """rpcgw_requests_total of one method and outcome, growing by ``per_minute`` for 30 minutes."""
    return series(
        "rpcgw_requests_total", f'{labels}, method="{method}", outcome="{outcome}"', f"0+{per_minute}x30"
    )


def timeouts(method: str, per_minute: int, labels: str = GATEWAY_POD) -> dict[str, str]:
    """rpcgw_timeouts_total of one method, growing by ``per_minute`` for 30 minutes."""
    return series("rpcgw_timeouts_total", f'{labels}, method="{method}"', f"0+{per_minute}x30")


def alerts(rules: dict[str, Any], name: str, labels: dict[str, str], **values: str) -> list[dict[str, Any]]:
    """The one alert ``name`` expected, with its rule's labels and annotations filled in.

    ``values`` replace the annotations' templates: ``method`` for ``{{ $labels.method }}``,
    ``value`` for ``{{ $value }}``, ``percentage`` for ``{{ $value | humanizePercentage }}``.
    """
    rule = rules[name]
    templates = {
        "{{ $labels.method }}": values.get("method"),
        "{{ $value | humanizePercentage }}": values.get("percentage"),
        "{{ $value }}": values.get("value"),
    }
    annotations = {}
    for key, template_text in rule["annotations"].items():
        text = template_text
        for template, value in templates.items():
            if template in text:
                assert value is not None, f"{name}.{key} uses {template}: pass its value"
                text = text.replace(template, value)
        assert "{{" not in text, f"{name}.{key} has a template this test does not fill: {text}"
        annotations[key] = text
    return [{"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}]


TIMEOUT_ALERT = "RPCGatewayHighTimeoutRate"


def check(eval_time: str, alertname: str, expected: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One ``alert_rule_test`` item: at ``eval_time``, ``alertname`` fires as ``expected`` (or not)."""
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": expected or []}


def case(inputs: list[dict[str, str]], *checks: dict[str, Any]) -> dict[str, Any]:
    """One promtool test case: ``inputs`` sampled every minute, then ``checks``."""
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": list(checks)}


def promtool_test(binaries: Binaries, rules_path: Path, tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    """Run ``promtool test rules`` on ``tests``; any failed expectation fails with promtool's report."""
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": tests})
    )
    result = binaries.run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rules_path(monitored: Manifests, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's PrometheusRule as a rule file."""
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_file(monitored)))
    return path


@pytest.fixture(scope="module")
def rules(monitored: Manifests) -> dict[str, Any]:
    """The chart's alert rules by name."""
    return {rule["alert"]: rule for rule in rule_file(monitored)["groups"][0]["rules"]}


def test_promtool_accepts_the_rules(binaries: Binaries, rules_path: Path, rules: dict[str, Any]) -> None:
    result = binaries.run_promtool("check", "rules", str(rules_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert set(rules) == {
        TIMEOUT_ALERT,
        "RPCWorkerConsumerLag",
        "RPCGatewayDown",
        "RPCWorkerDown",
    }


def test_promtool_accepts_every_values_file(helm: Helm, binaries: Binaries, tmp_path: Path) -> None:
    for values_file in sorted((REPO / "charts" / "kafka-rpc-gateway" / "ci").glob("*.yaml")):
        rule_on = {"apiVersions": [MONITORING_API], "metrics": {"prometheusRule": {"enabled": True}}}
        manifests = helm.render(rule_on, files=[values_file])
        path = tmp_path / f"{values_file.stem}.rules.yaml"
        path.write_text(yaml.safe_dump(rule_file(manifests)))
        result = binaries.run_promtool("check", "rules", str(path))
        assert result.returncode == 0, f"{values_file.name}: {result.stdout}{result.stderr}"


def test_timeout_alert_fires_for_the_method_that_times_out(
    binaries: Binaries, rules_path: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    # sleep: half of its calls time out. echo: a thousand times busier and healthy, so the
    # gateway-wide ratio (1 %) would stay under the 5 % threshold; per method, sleep stands out.
    # Another release's gateway in the namespace (pods named otherwise) times out on echo: not ours.
    other = f'namespace="{NAMESPACE}", pod="billing-kafka-rpc-gateway-gateway-5f6d7-abcde"'
    inputs = [
        calls("sleep", "ok", 60),
        calls("sleep", "timeout", 60),
        timeouts("sleep", 60),
        calls("echo", "ok", 6000),
        calls("echo", "timeout", 6),
        timeouts("echo", 6),
        calls("echo", "timeout", 600, other),
        timeouts("echo", 600, other),
    ]
    expected = alerts(
        rules,
        TIMEOUT_ALERT,
        {"namespace": NAMESPACE, "method": "sleep"},
        method="sleep",
        percentage="50%",
    )
    promtool_test(
        binaries,
        rules_path,
        tmp_path,
        # Above the threshold from the second minute, but `for` is 10m: pending only.
        [case(inputs, check("5m", TIMEOUT_ALERT), check("15m", TIMEOUT_ALERT, expected))],
    )
    assert expected[0]["exp_labels"]["deployment"] == GATEWAY
    assert "sleep" in expected[0]["exp_annotations"]["summary"]


def test_timeout_alert_is_silent_for_callers_own_wait_0(
    binaries: Binaries, rules_path: Path, tmp_path: Path
) -> None:
    # `Prefer: wait=0` is answered 504 at once with outcome caller_deadline, and never counted in
    # rpcgw_timeouts_total: ten of those a second for every reply is still not a timeout.
    assert errors.CallerDeadlineError.status == 504
    assert errors.CallerDeadlineError.outcome == "caller_deadline"
    inputs = [
        calls("sleep", "caller_deadline", 600),
        calls("sleep", "ok", 60),
        timeouts("sleep", 0),
    ]
    promtool_test(
        binaries,
        rules_path,
        tmp_path,
        [case(inputs, check("15m", TIMEOUT_ALERT), check("25m", TIMEOUT_ALERT))],
    )


def test_callers_wait_0_cannot_hide_real_timeouts(
    binaries: Binaries, rules_path: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    # 10 % of the calls sleep's workers could answer time out. A flood of wait=0 calls in the
    # denominator would make that 0.1 %; they are not attempts, so the alert still fires.
    inputs = [
        calls("sleep", "ok", 540),
        calls("sleep", "timeout", 60),
        timeouts("sleep", 60),
        calls("sleep", "caller_deadline", 60000),
        calls("sleep", "shed", 60000),
    ]
    expected = alerts(
        rules,
        TIMEOUT_ALERT,
        {"namespace": NAMESPACE, "method": "sleep"},
        method="sleep",
        percentage="10%",
    )
    promtool_test(
        binaries,
        rules_path,
        tmp_path,
        [case(inputs, check("15m", TIMEOUT_ALERT, expected))],
    )


def test_the_denominator_counts_outcomes_the_gateway_has(rules: dict[str, Any]) -> None:
    """The outcomes the timeout rule counts as attempts are real ones, the deadline's among them."""
    (attempts,) = re.findall(r'outcome=~"([^"]+)"', rules[TIMEOUT_ALERT]["expr"])
    counted = set(attempts.split("|"))
    outcomes = {cls.outcome for cls in _subclasses(errors.GatewayError)} | {"ok", "rejected", "accepted"}
    assert counted <= outcomes
    assert {errors.ReplyTimeout.outcome, errors.WorkerFailedError.outcome} <= counted
    assert errors.CallerDeadlineError.outcome not in counted


def _subclasses(cls: type[errors.GatewayError]) -> list[type[errors.GatewayError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_worker_lag_alert_fires_with_its_group_and_topic(
    binaries: Binaries, rules_path: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    # Two workers 3000 and 2000 records behind from minute 2. A release in another namespace,
    # far behind, is not this one's.
    other = f'namespace="billing", pod="{WORKER}-7c4f8d6b9-zzzzz"'
    inputs = [
        series("rpcworker_consumer_lag", WORKER_PODS[0], "0 0 3000x20"),
        series("rpcworker_consumer_lag", WORKER_PODS[1], "0 0 2000x20"),
        series("rpcworker_consumer_lag", other, "99999x22"),
    ]
    expected = alerts(
        rules,
        "RPCWorkerConsumerLag",
        {"namespace": NAMESPACE, "group": GROUP, "topic": TOPIC, "deployment": WORKER},
        value="5000",
    )
    promtool_test(
        binaries,
        rules_path,
        tmp_path,
        [case(inputs, check("10m", "RPCWorkerConsumerLag"), check("15m", "RPCWorkerConsumerLag", expected))],
    )
    assert GROUP in expected[0]["exp_annotations"]["summary"]
    assert TOPIC in expected[0]["exp_annotations"]["summary"]


def test_down_alerts_fire_when_no_pod_is_up(
    binaries: Binaries, rules_path: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    gateway_down = alerts(rules, "RPCGatewayDown", {"namespace": NAMESPACE})
    worker_down = alerts(rules, "RPCWorkerDown", {"namespace": NAMESPACE})
    assert worker_down[0]["exp_labels"]["group"] == GROUP
    up = [series("up", GATEWAY_POD, "1x30"), *(series("up", pod, "1x30") for pod in WORKER_PODS)]
    down_at_2m = [
        series("up", GATEWAY_POD, "1 1 0x28"),
        series("up", WORKER_PODS[0], "1 1 0x28"),
        series("up", WORKER_PODS[1], "1 1 stale"),  # that pod is gone
    ]
    promtool_test(
        binaries,
        rules_path,
        tmp_path,
        [
            case(up, check("20m", "RPCGatewayDown"), check("20m", "RPCWorkerDown")),
            {
                "interval": "1m",
                "input_series": down_at_2m,
                "alert_rule_test": [
                    # Down from minute 2; `for: 5m`.
                    check("5m", "RPCGatewayDown"),
                    check("10m", "RPCGatewayDown", gateway_down),
                    check("10m", "RPCWorkerDown", worker_down),
                ],
            },
        ],
    )


def test_workers_scaled_to_zero_by_keda_are_down_only_when_requests_come(
    helm: Helm, binaries: Binaries, tmp_path: Path
) -> None:
    values = monitoring_values(SCRAPE_INTERVAL)
    values["worker"] = {"keda": {"enabled": True, "minReplicaCount": 0}}
    values["apiVersions"] = [*values["apiVersions"], "keda.sh/v1alpha1"]
    manifests = helm.render(with_kafka(values))
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_file(manifests)))
    rules = {rule["alert"]: rule for rule in rule_file(manifests)["groups"][0]["rules"]}
    no_worker = series("up", GATEWAY_POD, "1x30")
    promtool_test(
        binaries,
        path,
        tmp_path,
        [
            case([no_worker], check("20m", "RPCWorkerDown")),
            {
                "interval": "1m",
                "input_series": [no_worker, calls("echo", "unknown_method", 60)],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "RPCWorkerDown",
                        "exp_alerts": alerts(rules, "RPCWorkerDown", {"namespace": NAMESPACE}),
                    },
                ],
            },
        ],
    )


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_to_its_runbook_section(rules: dict[str, Any]) -> None:
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    anchors = {github_anchor(heading) for heading in headings}
    for name, rule in rules.items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{DEFAULT_RUNBOOK_URL}#{name.lower()}"
        assert name.lower() in anchors, f"docs/RUNBOOK.md has no section {name}"
