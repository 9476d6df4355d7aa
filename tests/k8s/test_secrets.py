"""The database password never leaves the Secret: not in Events, status, children or logs.

A DSN whose password libpq cannot even parse (a bad percent-escape) is the worst case: libpq's
own error quotes the offending text. The operator, logging at DEBUG, syncs the gate and samples
depth with it for a while; then every Event, the status, every child and the whole log are
searched for the password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.support.operator_fixtures import OperatorProcess
from tests.support.polling import eventually

if TYPE_CHECKING:
    from devtools.kubeapi import KubeCluster

pytest_plugins = ["tests.support.kube", "tests.support.operator_fixtures"]

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
PASSWORD = "S3cr%zzetPw"


@pytest.fixture
def verbose_operator(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator at DEBUG, so even its most talkative log lines are searched."""
    proc = OperatorProcess(
        kube,
        kube_namespace,
        tmp_path / "operator.log",
        env_extra={"PGQUEUE_OPERATOR_VERBOSE": "true"},
    )
    proc.start()
    try:
        yield proc
    finally:
        kube.kubectl("-n", kube_namespace, "delete", "pgqueueworkers", "--all",
                     "--wait=true", "--timeout=30s", check=False)  # fmt: skip
        proc.stop()


def test_a_malformed_dsn_password_appears_nowhere(
    kube: KubeCluster, kube_namespace: str, verbose_operator: OperatorProcess
) -> None:
    ns = kube_namespace
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app"
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db", f"--from-literal=dsn={dsn}")
    kube.kubectl("-n", ns, "create", "configmap", "pgqueue-gate",
                 "--from-literal=pg_queue_enabled=true")  # fmt: skip
    body: dict[str, Any] = yaml.safe_load((SAMPLES / "minimal.yaml").read_text())
    body["spec"]["gate"] = {"configMapName": "pgqueue-gate"}
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))

    def pqw() -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            kube.kubectl("-n", ns, "get", "pqw", "minimal", "-o", "json").stdout
        )
        return out

    def gate_failed() -> dict[str, Any] | None:
        for c in (pqw().get("status") or {}).get("conditions") or []:
            if c["type"] == "GateSynced" and c["status"] == "False":
                return dict(c)
        return None

    condition = eventually("GateSynced=False: the database cannot be used", gate_failed, 30)
    assert condition["reason"] == "DatabaseUnavailable", condition
    # Several gate syncs and depth samples (0.5 s apart here) have failed by now.
    eventually(
        "the sampler to have retried",
        lambda: verbose_operator.logs().count("reading queue depth") >= 3,
        30,
    )

    events = kube.kubectl("-n", ns, "get", "events", "-o", "json").stdout
    children = kube.kubectl(
        "-n", ns, "get", "deployments,cronjobs,services,poddisruptionbudgets", "-o", "json"
    ).stdout
    places = {
        "events": events,
        "status": json.dumps(pqw().get("status")),
        "children": children,
        "operator log": verbose_operator.logs(),
    }
    assert "reading queue depth" in places["operator log"]
    for where, text in places.items():
        for fragment in (PASSWORD, "S3cr", "zzetPw"):
            assert fragment not in text, f"{fragment!r} leaked into the {where}"
