"""Status follows the pods (issue 17 item 7): ``kubectl get pqw`` READY within a watch event.

A real API server and controller-manager, no kubelet: the test plays the kubelet's one part that
matters here, writing the pods' Ready condition through the status subresource. The ReplicaSet
and Deployment controllers count them as a cluster would, and the operator (started with a resync
period far longer than the test, so only its Deployment watch can be the cause) must turn the
PgQueueWorker Ready, and back, within a watch event. The same is measured under a real
kubelet in tests/e2e/test_migration_day_node.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.support.pods import selector
from tests.support.polling import eventually

from pgqueue_operator.kube import Kube

if TYPE_CHECKING:
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = ["tests.support.kube", "tests.support.operator_fixtures"]

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "minimal.yaml"
BOUND = 5.0
"""Seconds from the last pod's Ready to the PgQueueWorker's: the issue asks for 2 s, which is
what is measured and printed; the assertion leaves room for a machine shared with other jobs, and
is still far below any resync (which would be the only other cause)."""


@pytest.fixture
def slow_resync_operator(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    from tests.support.operator_fixtures import OperatorProcess

    proc = OperatorProcess(
        kube, kube_namespace, tmp_path / "operator.log",
        env_extra={"PGQUEUE_OPERATOR_RESYNC_INTERVAL": "3600"},
    )  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        kube.kubectl("-n", kube_namespace, "delete", "pgqueueworkers", "--all",
                     "--wait=true", "--timeout=30s", check=False)  # fmt: skip
        proc.stop()


def set_ready(kube: KubeCluster, ns: str, pod: str, ready: bool) -> None:
    """What the kubelet writes when a readiness probe passes or fails."""
    status = "True" if ready else "False"
    patch = {"status": {"conditions": [{"type": "Ready", "status": status}]}}
    kube.kubectl("-n", ns, "patch", "pod", pod, "--subresource=status", "--type=strategic",
                 "-p", json.dumps(patch))  # fmt: skip


def test_ready_follows_the_pods_within_a_watch_event(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, slow_resync_operator: OperatorProcess
) -> None:
    ns = kube_namespace
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db",
                 f"--from-literal=dsn={pg_dsn}")  # fmt: skip
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"].update(replicas=2)
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))
    name = body["metadata"]["name"]

    def pods() -> list[str] | None:
        out = kube.kubectl("-n", ns, "get", "pods", "-l", selector(name),
                           "-o", "jsonpath={.items[*].metadata.name}")  # fmt: skip
        found = out.stdout.split()
        return found if len(found) == 2 else None

    first, last = eventually("the controller-manager to create 2 worker pods", pods)
    api = kube.api_client()
    raw = Kube(api)
    path = f"/apis/pgqueue.dev/v1alpha1/namespaces/{ns}/pgqueueworkers/{name}"

    def ready() -> str:
        status = raw.request("GET", path).get("status") or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return f"{found[0]['status']} {status.get('readyReplicas')}" if found else ""

    try:
        eventually("the first reconcile's status", lambda: ready() == "False 0")
        set_ready(kube, ns, first, True)
        eventually("readyReplicas 1", lambda: ready() == "False 1")
        t0 = time.monotonic()  # before the write: the figure is an upper bound, kubectl's included
        set_ready(kube, ns, last, True)
        eventually("READY True", lambda: ready() == "True 2", 30)
        up = time.monotonic() - t0
        table = kube.kubectl("-n", ns, "get", "pqw", name).stdout
        t1 = time.monotonic()
        set_ready(kube, ns, last, False)
        eventually("READY False", lambda: ready() == "False 1", 30)
        down = time.monotonic() - t1
    finally:
        api.close()
    print(f"\nREADY True {up:.2f}s after the last pod turned Ready, False {down:.2f}s after one "
          f"turned unready (resync period 3600 s)\n{table}")  # fmt: skip
    assert table.splitlines()[1].split()[1] == "True", table
    assert up < BOUND, f"READY True {up:.2f}s after the last pod"
    assert down < BOUND, f"READY False {down:.2f}s after a pod turned unready"
    log = slow_resync_operator.logs()
    assert "Traceback" not in log, log
