"""Worker pods under a real kubelet (issue 17): the operator's Deployment run on the test node.

``kube_node`` (tests/support/node.py) joins a containerd + kubelet node to the session's control
plane, and ``make images`` is imported into it. The operator runs as in test_operator.py and
reconciles ``crds/samples/minimal.yaml`` into a Deployment whose pods the kubelet starts from
``localhost/pgqueue-worker:dev`` with the builder's securityContext untouched: read-only root
filesystem, uid 10001, every capability dropped. Readiness is the kubelet's own probes; calls come
from this host through the node's bridge; deleting a busy pod is the kubelet's SIGTERM and grace.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from tests.support.pods import describe, pods_left, ready_workers, selector, worker_pods
from tests.support.polling import eventually

from pgqueue import Client

if TYPE_CHECKING:
    from tests.support.node import KubeNode, NodeImages
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = [
    "tests.support.kube",
    "tests.support.operator_fixtures",
    "tests.support.node",
]
pytestmark = pytest.mark.timeout(1500)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "crds" / "samples" / "minimal.yaml"
CHART = REPO / "charts" / "pgqueue-operator"
NAME = "minimal"
DEPLOYMENT = f"{NAME}-worker"


def restrict(kube: KubeCluster, ns: str) -> None:
    """Pod Security admission at ``restricted``: a pod the chart or the builder renders with a
    weaker context is refused by the API server before any kubelet sees it."""
    kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")


@dataclass
class Fleet:
    """The worker Deployment on the node, Ready; and the DSNs as host and pods spell them."""

    kube: KubeCluster
    node: KubeNode
    namespace: str
    dsn: str
    pod_dsn: str
    ready_seconds: float


@pytest.fixture
def fleet(
    kube: KubeCluster,
    kube_node: KubeNode,
    node_images_imported: NodeImages,
    kube_namespace: str,
    pg_dsn: str,
    operator_process: OperatorProcess,
) -> Iterator[Fleet]:
    ns = kube_namespace
    restrict(kube, ns)
    pod_dsn = kube_node.pod_dsn(pg_dsn)
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db",
                 f"--from-literal=dsn={pod_dsn}")  # fmt: skip
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"].update(
        image=node_images_imported.worker,
        imagePullPolicy="Never",  # no registry: the image is in the node's containerd
        tasks=["pgqueue.demo_tasks"],
        replicas=2,
        taskTimeLimitSeconds=30,
    )
    t0 = time.monotonic()
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))
    eventually(
        "2 worker pods Ready by the kubelet's probes",
        lambda: ready_workers(kube, ns, NAME, 2),
        180,
        explain=lambda: describe(kube, ns),
    )
    elapsed = time.monotonic() - t0
    print(f"\nworker pods Ready {elapsed:.1f}s after kubectl apply (node Ready in "
          f"{kube_node.ready_seconds:.1f}s, images imported in "
          f"{node_images_imported.import_seconds:.1f}s)")  # fmt: skip
    try:
        yield Fleet(kube, kube_node, ns, pg_dsn, pod_dsn, elapsed)
    finally:
        # Pods gone before the test database is dropped under them (they drain on SIGTERM).
        kube.kubectl("-n", ns, "delete", "pqw", NAME, "--timeout=60s", check=False)
        eventually("the worker pods gone", lambda: not pods_left(kube, ns), 120)


def test_worker_pods_run_on_the_node_with_the_restricted_security_context(fleet: Fleet) -> None:
    kube, ns = fleet.kube, fleet.namespace
    running = worker_pods(kube, ns, NAME)
    assert len(running) == 2
    for pod in running:
        assert pod["spec"]["nodeName"] == fleet.node.name
        container = pod["spec"]["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] is True
        assert status["restartCount"] == 0
        assert "running" in status["state"]

    table = kube.kubectl("-n", ns, "get", "pods", "-l", selector(NAME), "-o", "wide").stdout
    print(table)
    rows = [line.split() for line in table.splitlines()[1:]]
    header = table.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert len(rows) == 2
    for row in rows:
        assert row[1:4] == ["1/1", "Running", "0"], row
        assert row[5].startswith(fleet.node.gateway.rsplit(".", 1)[0] + "."), row  # a pod IP
        assert row[6] == fleet.node.name, row

    pod_name = running[0]["metadata"]["name"]

    def exec_(*cmd: str) -> Any:
        return kube.kubectl("-n", ns, "exec", pod_name, "-c", "worker", "--", *cmd, check=False)

    ident = exec_("id", "-u")
    assert (ident.returncode, ident.stdout.strip()) == (0, "10001"), ident.stderr
    write_root = exec_("touch", "/opt/venv/written")
    assert write_root.returncode != 0
    assert "Read-only file system" in write_root.stderr
    write_tmp = exec_("touch", "/tmp/written")  # the builder's emptyDir
    assert write_tmp.returncode == 0, write_tmp.stderr
    caps = exec_("grep", "^CapEff", "/proc/1/status")
    assert caps.stdout.split() == ["CapEff:", "0000000000000000"], caps.stdout

    logs = kube.kubectl("-n", ns, "logs", pod_name, "-c", "worker").stdout
    # PGQUEUE_WORKER_ID comes from a fieldRef: the kubelet resolved it to the pod's name.
    assert f"worker {pod_name}: queues=default" in logs, logs

    with Client(fleet.dsn) as client:
        result = client.call("demo.echo", args=["from", "the", "host"], timeout=60)
    assert result.ok, result
    assert result.value == {"args": ["from", "the", "host"], "kwargs": {}}


def test_deleting_a_busy_worker_pod_still_answers_every_caller(fleet: Fleet) -> None:
    kube, ns = fleet.kube, fleet.namespace
    callers = 8
    seconds = 3.0

    def claimed_by() -> list[str]:
        with psycopg.connect(fleet.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT DISTINCT claimed_by FROM pgqueue.message WHERE claimed_by IS NOT NULL"
            ).fetchall()
        return [str(r[0]) for r in rows]

    with (
        Client(fleet.dsn) as client,
        concurrent.futures.ThreadPoolExecutor(callers) as pool,
    ):
        futures = [
            pool.submit(client.call, "demo.sleep", args=[seconds], timeout=120)
            for _ in range(callers)
        ]
        busy = eventually("a worker pod running a task", claimed_by, 60)[0]
        # Follows the container to its end: the last lines are the drain, as the kubelet's
        # SIGTERM started it.
        follow = subprocess.Popen(
            [kube.tool("kubectl"), "--kubeconfig", str(kube.kubeconfig),
             "-n", ns, "logs", "--follow", busy, "-c", "worker"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        t0 = time.monotonic()
        kube.kubectl("-n", ns, "delete", "pod", busy, "--wait=false")
        results = [f.result(timeout=180) for f in futures]
        answered = time.monotonic() - t0
        try:
            logs, _ = follow.communicate(timeout=120)
        finally:
            follow.kill()
    bad = [r for r in results if not r.ok]
    assert not bad, bad
    assert all(r.value == seconds for r in results)
    print(f"\n{callers} callers answered {answered:.1f}s after `kubectl delete pod {busy}`")
    assert "received SIGTERM: no new claims" in logs, logs
    assert f"worker {busy} stopped:" in logs, logs

    replaced = eventually(
        "the Deployment back at 2 Ready pods",
        lambda: ready_workers(kube, ns, NAME, 2),
        explain=lambda: describe(kube, ns),
    )
    assert busy not in [p["metadata"]["name"] for p in replaced]


def test_the_charts_operator_pod_reconciles_worker_pods_on_the_node(
    kube: KubeCluster,
    kube_node: KubeNode,
    node_images_imported: NodeImages,
    kube_namespace: str,
    pg_dsn: str,
    pgqueue_crd: Path,
) -> None:
    """helm install: the operator runs as a pod from localhost/pgqueue-operator:dev with the
    chart's ServiceAccount (its RBAC, not an admin kubeconfig) and reconciles a PgQueueWorker into
    worker pods on the same node."""
    ns = kube_namespace
    restrict(kube, ns)
    release = "pgq"
    # No kube-proxy here: the operator reaches the API server through the node's forwarder,
    # named by the two variables client libraries read for the in-cluster config.
    api = kube_node.forward("127.0.0.1", kube_node.api_port)
    extra_env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": api.host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(api.port)},
    ]
    t0 = time.monotonic()
    kube.helm(
        "install", release, str(CHART), "--namespace", ns,
        "--set", f"watchNamespaces={{{ns}}}", "--set", "image.tag=dev",
        "--set", "image.pullPolicy=Never", "--set", "logFormat=plain",
        "--set-json", f"extraEnv={json.dumps(extra_env)}",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    print(f"\nhelm install --wait: operator pod Running {time.monotonic() - t0:.1f}s")
    try:
        kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db",
                     f"--from-literal=dsn={kube_node.pod_dsn(pg_dsn)}")  # fmt: skip
        body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
        body["spec"].update(
            image=node_images_imported.worker,
            imagePullPolicy="Never",
            tasks=["pgqueue.demo_tasks"],
            taskTimeLimitSeconds=30,
        )
        t1 = time.monotonic()
        kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))
        eventually(
            "the worker pod Ready",
            lambda: ready_workers(kube, ns, NAME, 1),
            180,
            explain=lambda: describe(kube, ns),
        )
        print(f"worker pod Ready {time.monotonic() - t1:.1f}s after kubectl apply")

        table = kube.kubectl("-n", ns, "get", "pods", "-o", "wide").stdout
        print(table)
        rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
        operator = [n for n in rows if n.startswith(f"{release}-pgqueue-operator-")]
        worker = [n for n in rows if n.startswith(f"{DEPLOYMENT}-")]
        assert len(operator) == 1 and len(worker) == 1, rows
        for name in operator + worker:
            assert rows[name][1:4] == ["1/1", "Running", "0"], rows[name]
            assert rows[name][6] == kube_node.name, rows[name]
        logs = kube.kubectl("-n", ns, "logs", operator[0]).stdout
        assert "Traceback" not in logs, logs
        # The chart's namespaced RBAC has no cluster scope: kopf must not even try it (it used
        # to retry a namespace listing for ~55 s before handling any object).
        assert "APIForbiddenError" not in logs, logs

        with Client(pg_dsn) as client:
            result = client.call("demo.add", args=[2, 3], timeout=60)
        assert result.ok, result
        assert result.value == 5
    finally:
        # The operator removes its finalizer while it still runs; then the release goes.
        kube.kubectl("-n", ns, "delete", "pqw", NAME, "--timeout=60s", check=False)
        kube.helm("uninstall", release, "--namespace", ns, "--wait", check=False)
        eventually("every pod gone", lambda: not pods_left(kube, ns), 120)


def test_the_sweep_cronjob_runs_as_a_job_pod_on_the_node(fleet: Fleet) -> None:
    """The CronJob's own template, run now (``kubectl create job --from``): the Job controller
    makes a Pod, the kubelet runs ``pgqueue sweep`` with the restricted context, it deletes an
    expired reply and the Job completes."""
    kube, ns = fleet.kube, fleet.namespace
    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.result (reply_key, status, result, expires_at) VALUES"
            " ('expired-by-test', 'completed', 'null', now() - interval '1 hour'),"
            " ('fresh-by-test', 'completed', 'null', now() + interval '1 hour')"
        )
    kube.kubectl("-n", ns, "create", "job", "sweep-now", f"--from=cronjob/{NAME}-sweep")

    def completed() -> dict[str, Any] | None:
        out = kube.kubectl("-n", ns, "get", "job", "sweep-now", "-o", "json")
        job: dict[str, Any] = json.loads(out.stdout)
        status = job.get("status") or {}
        assert not status.get("failed"), kube.kubectl("-n", ns, "logs", "job/sweep-now").stdout
        return job if status.get("succeeded") == 1 else None

    eventually("the sweep Job to complete", completed, 120)
    logs = kube.kubectl("-n", ns, "logs", "job/sweep-now").stdout
    swept = re.search(r"swept (\d+) expired replies", logs)
    assert swept, logs
    if swept.group(1) != "1":
        # The CronJob's own schedule may have fired between the INSERT and this pod: then its
        # Job took the row (the database checks below hold either way).
        jobs = kube.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split()
        assert swept.group(1) == "0" and len(jobs) > 1, (logs, jobs)
    pod = json.loads(
        kube.kubectl("-n", ns, "get", "pods", "-l", "job-name=sweep-now", "-o", "json").stdout
    )["items"][0]
    assert pod["spec"]["nodeName"] == fleet.node.name
    assert pod["status"]["phase"] == "Succeeded"
    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        keys = [r[0] for r in conn.execute("SELECT reply_key FROM pgqueue.result ORDER BY 1")]
    assert "expired-by-test" not in keys
    assert "fresh-by-test" in keys
