"""The chart's PrometheusRule as on-call meets it: rendered by real Helm, run by promtool.

``promtool check rules`` on the rules exactly as ``helm template`` renders them, and ``promtool
test rules`` (``alerts/pgqueue.test.yaml``) firing every alert on synthetic series and keeping it
quiet on a healthy neighbour. Each alert must link to its section of docs/metrics.md. A missing
helm or promtool fails these tests: CI runs every tier.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.kubeapi import bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pgqueue-operator"
TESTS = Path(__file__).parent / "alerts" / "pgqueue.test.yaml"
RUNBOOK = REPO / "docs" / "metrics.md"
ALERTS = {
    "PgQueueStuck",
    "PgQueueDeadLettersGrowing",
    "PgQueueDepthUnknown",
    "PgQueuePausedLong",
    "PgQueueGateStoreUnreachable",
    "PgQueueHeartbeatStale",
    "PgQueueWorkerDown",
    "PgQueueLeasesLost",
    "PgQueueRpcLatencyHigh",
}
ENABLED = ("--set", "metrics.prometheusRule.enabled=true")


def tool(name: str) -> str:
    found = bin_dir() / name if name == "helm" else shutil.which(name)
    if found is None or not Path(found).is_file():
        pytest.fail(f"{name} not found (helm: `make k8s-tools`; promtool: Debian's prometheus)")
    return str(found)


def helm_template(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **{f"HELM_{kind}_HOME": str(tmp / "helm" / kind) for kind in ("CACHE", "CONFIG", "DATA")},
    }
    return subprocess.run(
        [tool("helm"), "template", "pq", str(CHART), "--namespace", "monitoring", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=check,
    )


def rendered(tmp: Path, *args: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(helm_template(tmp, *args).stdout) if doc]


def prometheus_rules(tmp: Path, *args: str) -> list[dict[str, Any]]:
    return [d for d in rendered(tmp, *args) if d["kind"] == "PrometheusRule"]


def rules_of(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The rendered rules as a Prometheus rule file, next to the promtool tests."""
    (rule,) = prometheus_rules(tmp_path, *ENABLED)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return tmp_path


def test_promtool_checks_the_rendered_rules(rules_dir: Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_every_alert_fires_on_synthetic_series(rules_dir: Path) -> None:
    result = promtool("test", "rules", TESTS.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case.get("exp_alerts")
    }
    assert fired == ALERTS, "each alert is shown firing"
    assert quiet == ALERTS, "each alert is shown quiet before its threshold"


def test_a_broken_rule_fails_its_promtool_test(rules_dir: Path) -> None:
    """The tests can fail: summing depth over its two sources alerts twice for one queue."""
    rules = yaml.safe_load((rules_dir / "rules.yaml").read_text())
    for rule in rules["groups"][0]["rules"]:
        rule["expr"] = rule["expr"].replace("max by (namespace, queue) ", "")
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump(rules))
    result = promtool("test", "rules", TESTS.name, cwd=rules_dir)
    assert result.returncode != 0
    assert "PgQueueStuck" in result.stdout + result.stderr


def test_each_alert_explains_itself_and_links_its_runbook_section(tmp_path: Path) -> None:
    (rule,) = prometheus_rules(tmp_path, *ENABLED)
    alerts = rules_of(rule)
    assert set(alerts) == ALERTS
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for name, alert in alerts.items():
        notes = alert["annotations"]
        assert notes["summary"] and notes["description"], name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/metrics.md" and anchor == name.lower(), notes["runbook_url"]
        assert anchor in headings, f"docs/metrics.md has no section for {name}"


def test_off_by_default_and_thresholds_come_from_values(tmp_path: Path) -> None:
    assert prometheus_rules(tmp_path) == [], "off unless asked (needs the Prometheus Operator)"
    (rule,) = prometheus_rules(
        tmp_path,
        *ENABLED,
        "--set", "metrics.prometheusRule.stuckQueue.oldestAgeSeconds=42",
        "--set", "metrics.prometheusRule.rpcLatencyHigh.p99Seconds=0.25",
        "--set", "metrics.prometheusRule.leasesLost.enabled=false",
        "--set", "metrics.prometheusRule.labels.release=kube-prometheus",
        "--set", "metrics.prometheusRule.alertLabels.team=payments",
        "--set", "metrics.prometheusRule.runbookUrl=https://runbooks.example/pgqueue",
    )  # fmt: skip
    alerts = rules_of(rule)
    assert set(alerts) == ALERTS - {"PgQueueLeasesLost"}
    assert "(pgqueue_queue_oldest_age_seconds) > 42 unless" in alerts["PgQueueStuck"]["expr"]
    assert alerts["PgQueueRpcLatencyHigh"]["expr"].endswith("> 0.25")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert all(a["labels"]["team"] == "payments" for a in alerts.values())
    assert alerts["PgQueueStuck"]["annotations"]["runbook_url"] == (
        "https://runbooks.example/pgqueue#pgqueuestuck"
    )


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("metrics.prometheusRule.stuckQueue.oldestAgeSeconds=-5", "oldestAgeSeconds"),
        ("metrics.prometheusRule.deadLettersGrowing.window=soon", "window"),
        ("metrics.prometheusRule.heartbeatStale.sieverity=page", "sieverity"),
    ],
)
def test_bad_alert_values_are_refused_naming_the_field(
    tmp_path: Path, setting: str, field: str
) -> None:
    result = helm_template(tmp_path, *ENABLED, "--set", setting, check=False)
    assert result.returncode != 0
    assert field in result.stderr


def test_servicemonitor_keeps_the_operator_labels(tmp_path: Path) -> None:
    """honorLabels: the operator's series carry the PgQueueWorker's namespace as a label."""
    docs = rendered(tmp_path, "--set", "metrics.serviceMonitor.enabled=true")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert all(e["honorLabels"] is True for e in monitor["spec"]["endpoints"])
