"""``spec.pod`` on a real API server: envFrom a Secret and a ConfigMap, env; the task sees them.

The operator renders the Deployment; the controller-manager makes a Pod of it; with no kubelet
here, :mod:`devtools.e2e_pods` starts that Pod's container command as a local process, its
env resolved from the real Secret and ConfigMap. A call then proves the task reads both. The API
server's own validation (the CRD's CEL rules) refuses a spec that sets a derived ``PGQUEUE_*``
variable, naming the field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.support.polling import eventually

from devtools.e2e_pods import PodProcess, plan_pod, python_entrypoints
from pgqueue import Client

if TYPE_CHECKING:
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = ["tests.support.kube", "tests.support.operator_fixtures"]

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"


def get_json(kube: KubeCluster, ns: str, *args: str) -> dict[str, Any] | None:
    proc = kube.kubectl("-n", ns, "get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(proc.stdout)
    return body


def worker(name: str, **pod: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((SAMPLES / "minimal.yaml").read_text())
    body["metadata"]["name"] = name
    body["spec"].update(
        {"queues": ["envprobe"], "tasks": ["tests.support.env_tasks"], "migrate": False}
    )
    body["spec"]["pod"] = pod
    return body


@pytest.fixture
def pods() -> Iterator[list[PodProcess]]:
    started: list[PodProcess] = []
    try:
        yield started
    finally:
        for pod in started:
            pod.stop()


def test_env_from_a_secret_and_a_configmap_reach_the_task(
    kube: KubeCluster,
    kube_namespace: str,
    pg_dsn: str,
    operator_process: OperatorProcess,
    tmp_path: Path,
    pods: list[PodProcess],
) -> None:
    ns = kube_namespace
    token = f"tok-{uuid.uuid4().hex}"
    kube.kubectl(
        "-n", ns, "create", "secret", "generic", "pgqueue-db", f"--from-literal=dsn={pg_dsn}"
    )
    kube.kubectl("-n", ns, "create", "secret", "generic", "app-secrets",
                 f"--from-literal=API_TOKEN={token}")  # fmt: skip
    kube.kubectl("-n", ns, "create", "configmap", "app-settings",
                 "--from-literal=GREETING=bonjour", "--from-literal=REGION=eu-west-1")  # fmt: skip
    body = worker(
        "envprobe",
        envFrom=[
            {"secretRef": {"name": "app-secrets"}},
            {"configMapRef": {"name": "app-settings"}, "prefix": "APP_"},
        ],
        env=[
            {"name": "APP_MODE", "value": "k8s"},
            # An env entry wins over an envFrom key of the same name (the kubelet's rule).
            {"name": "APP_REGION", "value": "overridden"},
        ],
    )
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))

    deployment = eventually(
        "the worker Deployment", lambda: get_json(kube, ns, "deployment", "envprobe-worker"), 30
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [
        {"secretRef": {"name": "app-secrets"}},
        {"configMapRef": {"name": "app-settings"}, "prefix": "APP_"},
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["APP_MODE"] == {"name": "APP_MODE", "value": "k8s"}
    assert env["PGQUEUE_DSN"]["valueFrom"] == {"secretKeyRef": {"name": "pgqueue-db", "key": "dsn"}}
    assert token not in json.dumps(deployment)  # envFrom by reference, never the value

    selector = "app.kubernetes.io/instance=envprobe,app.kubernetes.io/component=worker"

    def a_pod() -> dict[str, Any] | None:
        found = get_json(kube, ns, "pods", "-l", selector) or {}
        items: list[dict[str, Any]] = found.get("items") or []
        return items[0] if items else None

    pod = eventually("the controller-manager to create the worker pod", a_pod, 60)
    assert pod["spec"]["containers"][0]["envFrom"] == container["envFrom"]
    process = plan_pod(kube, pod, tmp_path / "pods", resolve=python_entrypoints)
    pods.append(process.start())
    process.wait_ready(timeout=90)

    names = ["API_TOKEN", "APP_GREETING", "APP_REGION", "APP_MODE", "PGQUEUE_WORKER_ID"]
    result = Client(pg_dsn).call("envprobe.settings", args=names, queue="envprobe", timeout=60)
    assert result.ok, f"{result}\n{process.tail()}"
    assert result.value == {
        "API_TOKEN": token,  # Secret, through envFrom
        "APP_GREETING": "bonjour",  # ConfigMap, through envFrom with a prefix
        "APP_REGION": "overridden",  # env wins over envFrom
        "APP_MODE": "k8s",  # env
        "PGQUEUE_WORKER_ID": pod["metadata"]["name"],  # the operator's own variable
    }


def test_the_api_server_refuses_a_derived_variable_in_env(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path
) -> None:
    body = worker("badenv", env=[{"name": "PGQUEUE_LEASE", "value": "5"}])
    proc = kube.kubectl(
        "-n", kube_namespace, "apply", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert proc.returncode != 0
    assert "spec.pod.env[0].name" in proc.stderr, proc.stderr
    assert "PGQUEUE_LEASE is derived by the operator" in proc.stderr, proc.stderr

    body = worker("badmount", volumeMounts=[{"name": "nope", "mountPath": "/data"}])
    proc = kube.kubectl(
        "-n", kube_namespace, "apply", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert proc.returncode != 0
    assert "every mount names a volume of pod.volumes" in proc.stderr, proc.stderr
