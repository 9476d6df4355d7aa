"""The operator against a real API server and a real Postgres (issue 5's acceptance).

The operator runs as a subprocess (``pgqueue-operator run --namespace <ns>``); the samples in
``crds/samples/`` are what the tests apply, pointed at the test's Secret and gate ConfigMap. There
is no kubelet: pods stay Pending, so readiness is never the subject here, while every object the
operator writes, the flag row it keeps in Postgres, its Events and its metrics are.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from tests.support.polling import eventually

from pgqueue import Client, Message
from pgqueue_operator.kube import Kube

if TYPE_CHECKING:  # imported as plugins below, so pytest can rewrite their asserts
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = ["tests.support.kube", "tests.support.operator_fixtures"]

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"


# ---------------------------------------------------------------------------------------------
# Helpers


def get(kube: KubeCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = kube.kubectl("-n", ns, "get", kind, name, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    body: dict[str, Any] = json.loads(proc.stdout)
    return body


def apply(kube: KubeCluster, ns: str, body: dict[str, Any]) -> None:
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))


def sample(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    body["spec"].update(spec)
    return body


def setup_database(kube: KubeCluster, ns: str, dsn: str, gate: str | None = "false") -> None:
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db", f"--from-literal=dsn={dsn}")
    if gate is not None:
        kube.kubectl(
            "-n",
            ns,
            "create",
            "configmap",
            "pgqueue-gate",
            f"--from-literal=pg_queue_enabled={gate}",
        )


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def flag(dsn: str) -> tuple[bool, str, str] | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT enabled, value, source FROM pgqueue.flag WHERE key = 'pg_queue_enabled'"
        ).fetchone()
    return None if row is None else (bool(row[0]), str(row[1]), str(row[2]))


def events(kube: KubeCluster, ns: str, reason: str) -> list[dict[str, Any]]:
    out = kube.kubectl(
        "-n", ns, "get", "events", "-o", "json",
        "--field-selector", f"involvedObject.kind=PgQueueWorker,reason={reason}",
    )  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _children_reader(api: Any, ns: str, name: str) -> Callable[[], bool]:
    """A fast in-process check that all four children exist: plain GETs, no kubectl start-up and
    no typed-model decoding in the measured time."""
    raw = Kube(api)
    wanted = [
        ("apps/v1", "Deployment", f"{name}-worker"),
        ("v1", "Service", f"{name}-metrics"),
        ("batch/v1", "CronJob", f"{name}-sweep"),
        ("policy/v1", "PodDisruptionBudget", f"{name}-worker"),
    ]

    def check() -> bool:
        return all(raw.get(version, kind, ns, child) is not None for version, kind, child in wanted)

    return check


CHILDREN = [
    ("deployment", "{}-worker"),
    ("service", "{}-metrics"),
    ("cronjob", "{}-sweep"),
    ("poddisruptionbudget", "{}-worker"),
]


# ---------------------------------------------------------------------------------------------
# 1. The CRD: invalid specs are rejected by the API server, naming the field.


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"taskTimeLimitSeconds": -1}, "spec.taskTimeLimitSeconds"),
        ({"concurrency": 0}, "spec.concurrency"),
        ({"retention": {"resultTtlSeconds": 100}}, "spec.retention.resultTtlSeconds"),
        (
            {"timing": {"callerTimeoutSeconds": 900}, "retention": {"resultTtlSeconds": 600}},
            "spec.retention.resultTtlSeconds",
        ),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"timing": {"shutdownGraceSeconds": 1000}}, "spec.timing.shutdownGraceSeconds"),
        ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
        ({"queues": []}, "spec.queues"),
        ({"bogus": 1}, 'unknown field "spec.bogus"'),
    ],
    ids=[
        "negative-limit",
        "zero-concurrency",
        "retention-below-caller-timeout",
        "retention-below-explicit-caller-timeout",
        "min-above-max",
        "drain-above-limit",
        "bad-enum",
        "no-queues",
        "unknown-field",
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path, change: dict[str, Any], needle: str
) -> None:
    body = sample("minimal", **change)
    proc = kube.kubectl(
        "-n", kube_namespace, "apply", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert proc.returncode != 0, proc.stdout
    assert needle in proc.stderr, proc.stderr


def test_name_too_long_for_the_children_is_rejected(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path
) -> None:
    body = sample("minimal")
    body["metadata"]["name"] = "n" * 47
    proc = kube.kubectl(
        "-n", kube_namespace, "apply", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert proc.returncode != 0
    assert "metadata.name must be at most 46 characters" in proc.stderr


def test_every_sample_is_accepted(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path
) -> None:
    for path in sorted(SAMPLES.glob("*.yaml")):
        kube.kubectl("-n", kube_namespace, "apply", "--dry-run=server", "-f", str(path))


# ---------------------------------------------------------------------------------------------
# 2. A sample becomes children within 2 s, with owner references, env, probes, labels, status.


def test_sample_creates_children_and_status(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn)
    body = sample("production")
    api = kube.api_client()
    try:
        exists = _children_reader(api, ns, "extract")
        path = f"/apis/pgqueue.dev/v1alpha1/namespaces/{ns}/pgqueueworkers"
        t0 = time.monotonic()  # in-process create: kubectl's own start-up is not the operator's
        Kube(api).request("POST", path, body=body)
        eventually("Deployment, Service, CronJob and PDB", exists, 10)
        elapsed = time.monotonic() - t0
    finally:
        api.close()
    print(f"\nchildren of a new PgQueueWorker appeared in {elapsed:.2f}s")
    assert elapsed < 2.0

    pqw = get(kube, ns, "pqw", "extract")
    assert pqw is not None
    for kind, pattern in CHILDREN:
        child = get(kube, ns, kind, pattern.format("extract"))
        assert child is not None
        refs = child["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": "pgqueue.dev/v1alpha1",
                "kind": "PgQueueWorker",
                "name": "extract",
                "uid": pqw["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "extract"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pgqueue-operator"

    deployment = get(kube, ns, "deployment", "extract-worker")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    env = env_of(deployment)
    assert env["PGQUEUE_DSN"] == {"secretKeyRef": {"name": "pgqueue-db", "key": "dsn"}}
    assert env["PGQUEUE_TASK_TIME_LIMIT"] == "120"
    assert env["PGQUEUE_LEASE"] == "30"
    assert env["PGQUEUE_RESULT_TTL"] == "7200"
    assert env["PGQUEUE_POOLED"] == "true"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 135
    container = pod["containers"][0]
    assert container["args"] == ["worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    cron = get(kube, ns, "cronjob", "extract-sweep")
    assert cron is not None
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"

    def reconciled() -> dict[str, Any] | None:
        live = get(kube, ns, "pqw", "extract")
        status = (live or {}).get("status") or {}
        ok = status.get("observedGeneration") == 1 and condition(live, "Degraded")
        return live if ok else None

    pqw = eventually("status.observedGeneration", reconciled, 10)
    status = pqw["status"]
    assert status["derived"]["terminationGracePeriodSeconds"] == 135
    assert status["derived"]["callerTimeoutSeconds"] == 90
    assert status["replicas"] == 3
    assert condition(pqw, "Degraded")["status"] == "False"  # type: ignore[index]
    assert condition(pqw, "Ready")["reason"] == "PodsNotReady"  # type: ignore[index]  # no kubelet
    assert condition(pqw, "Paused")["status"] == "False"  # type: ignore[index]
    for c in status["conditions"]:
        assert c["observedGeneration"] == 1
        assert c["lastTransitionTime"]

    table = kube.kubectl("-n", ns, "get", "pqw").stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "READY", "REPLICAS", "DEPTH", "GATE", "PAUSED-QUEUES", "AGE"]
    assert table.splitlines()[1].split()[:5] == ["extract", "False", "3", "0", "off"]


# ---------------------------------------------------------------------------------------------
# 3. Spec and Secret changes flow into the Deployment.


def test_timing_change_and_secret_rotation_roll_the_pods(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn, gate=None)
    apply(kube, ns, sample("minimal"))
    first = eventually("deployment", lambda: get(kube, ns, "deployment", "minimal-worker"), 10)
    assert env_of(first)["PGQUEUE_TASK_TIME_LIMIT"] == "300"
    assert first["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 315

    kube.kubectl("-n", ns, "patch", "pqw", "minimal", "--type=merge",
                 "-p", '{"spec": {"taskTimeLimitSeconds": 60}}')  # fmt: skip

    def changed() -> dict[str, Any] | None:
        d = get(kube, ns, "deployment", "minimal-worker")
        return d if d and env_of(d)["PGQUEUE_TASK_TIME_LIMIT"] == "60" else None

    second = eventually("the new time limit in the Deployment", changed, 10)
    assert second["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 75
    assert env_of(second)["PGQUEUE_SHUTDOWN_GRACE"] == "60"

    def derived_follows() -> bool:
        live = get(kube, ns, "pqw", "minimal") or {}
        status = live.get("status") or {}
        return status.get("observedGeneration") == 2 and (
            status.get("derived", {}).get("taskTimeLimitSeconds") == 60
        )

    eventually("status.derived to follow", derived_follows, 10)

    key = "pgqueue.dev/checksum"
    before = second["spec"]["template"]["metadata"]["annotations"][key]
    rotated = base64.b64encode(f"{pg_dsn} application_name=rotated".encode()).decode()
    kube.kubectl(
        "-n", ns, "patch", "secret", "pgqueue-db", "-p", json.dumps({"data": {"dsn": rotated}})
    )

    def rolled() -> str | None:
        d = get(kube, ns, "deployment", "minimal-worker") or {}
        value = d["spec"]["template"]["metadata"]["annotations"][key]
        return str(value) if value != before else None

    t0 = time.monotonic()
    eventually("the checksum annotation to change after the Secret rotation", rolled, 10)
    print(f"\nSecret rotation reached the pod template in {time.monotonic() - t0:.2f}s")


# ---------------------------------------------------------------------------------------------
# 4. The gate: ConfigMap edit → flag row within 2 s, Events; a bad value → off + Warning.


def test_gate_flip_reaches_postgres_within_two_seconds(
    kube: KubeCluster,
    kube_namespace: str,
    pg_dsn: str,
    operator_process: OperatorProcess,
    request: pytest.FixtureRequest,
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn, gate="false")
    apply(kube, ns, sample("autoscaled"))
    eventually("the initial gate (off) in the flag table", lambda: flag(pg_dsn), 10)
    assert flag(pg_dsn)[0] is False  # type: ignore[index]

    api = kube.api_client()
    request.addfinalizer(api.close)
    gate_path = f"/api/v1/namespaces/{ns}/configmaps/pgqueue-gate"
    for value, enabled, reason in (("true", True, "GateOn"), ("off", False, "GateOff")):
        t0 = time.monotonic()  # in-process edit: kubectl's own start-up is not the operator's
        Kube(api).request(
            "PATCH",
            gate_path,
            body={"data": {"pg_queue_enabled": value}},
            content_type="application/merge-patch+json",
        )
        row = eventually(
            f"flag {value}", lambda e=enabled: (r := flag(pg_dsn)) and r[0] is e and r, 10
        )
        elapsed = time.monotonic() - t0
        print(f"\ngate {value}: flag row changed {elapsed:.3f}s after the ConfigMap edit")
        assert elapsed < 2.0
        cm = get(kube, ns, "configmap", "pgqueue-gate")
        assert cm is not None
        assert row[2] == f"configmap {ns}/pgqueue-gate@{cm['metadata']['resourceVersion']}"
        eventually(f"a {reason} Event", lambda r=reason: events(kube, ns, r), 10)

        def status_follows(v: str = value) -> bool:
            gate = ((get(kube, ns, "pqw", "autoscaled") or {}).get("status") or {}).get("gate")
            return bool(gate) and gate["value"] == v

        eventually("status.gate", status_follows, 10)

    kube.kubectl("-n", ns, "patch", "configmap", "pgqueue-gate", "-p",
                 '{"data": {"pg_queue_enabled": "true"}}')  # fmt: skip
    eventually("flag on", lambda: (r := flag(pg_dsn)) and r[0], 10)
    kube.kubectl("-n", ns, "patch", "configmap", "pgqueue-gate", "-p",
                 '{"data": {"pg_queue_enabled": "maybe"}}')  # fmt: skip
    row = eventually(
        "flag off after a bad value", lambda: (r := flag(pg_dsn)) and not r[0] and r, 10
    )
    assert row[1] == "maybe"
    warnings = eventually(
        "a GateValueInvalid Warning", lambda: events(kube, ns, "GateValueInvalid"), 10
    )
    assert warnings[0]["type"] == "Warning"
    live = eventually(
        "GateSynced=False",
        lambda: (
            (b := get(kube, ns, "pqw", "autoscaled"))
            and (condition(b, "GateSynced") or {}).get("status") == "False"
            and b
        ),
        10,
    )
    assert condition(live, "GateSynced")["reason"] == "GateValueInvalid"  # type: ignore[index]
    assert live["status"]["gate"]["state"] == "off"


# ---------------------------------------------------------------------------------------------
# 5. Depth into status and metrics; autoscaling up at once, down only after the delay.


def test_depth_status_metrics_and_autoscaling(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    delay = 4
    setup_database(kube, ns, pg_dsn)
    apply(
        kube,
        ns,
        sample(
            "autoscaled",
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "targetBacklogPerReplica": 100,
                "scaleDownDelaySeconds": delay,
            },
        ),
    )

    def replicas() -> int | None:
        deployment = get(kube, ns, "deployment", "autoscaled-worker")
        return None if deployment is None else int(deployment["spec"]["replicas"])

    def backlog() -> int | None:
        status = (get(kube, ns, "pqw", "autoscaled") or {}).get("status") or {}
        return status.get("backlog")

    eventually("the Deployment at minReplicas", lambda: replicas() == 1, 10)

    client = Client(pg_dsn)
    try:
        client.enqueue_many(Message(task="app.tasks.noop", queue="default") for _ in range(1000))
    finally:
        client.close()

    def backlog_seen() -> dict[str, Any] | None:
        status = (get(kube, ns, "pqw", "autoscaled") or {}).get("status") or {}
        return status if status.get("backlog") == 1000 else None

    status = eventually("status.backlog == 1000", backlog_seen, 15)
    assert status["depth"] == [
        {"queue": "default", "ready": 1000, "inFlight": 0, "delayed": 0, "dead": 0,
         "oldestAgeSeconds": status["depth"][0]["oldestAgeSeconds"], "paused": False}
    ]  # fmt: skip
    text = operator_process.metrics()
    labels = {"namespace": ns, "pgqueueworker": "autoscaled", "queue": "default"}
    assert metric(text, "pgqueue_queue_depth", state="ready", **labels) == 1000
    assert metric(text, "pgqueue_queue_depth", state="in_flight", **labels) == 0
    assert metric(text, "pgqueue_dead_letter_depth", **labels) == 0
    assert metric(text, "pgqueue_queue_oldest_age_seconds", **labels) is not None
    assert metric(text, "pgqueue_gate_enabled", namespace=ns, pgqueueworker="autoscaled") == 0

    eventually("scale up to maxReplicas", lambda: replicas() == 4, 15)
    eventually("a ScaledUp Event", lambda: events(kube, ns, "ScaledUp"), 10)

    # Drain the queue (no kubelet runs the workers here, so the test consumes the messages).
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgqueue.message")
    drained = time.monotonic()
    eventually("status.backlog == 0", lambda: backlog() == 0, 10)
    eventually("scale down to minReplicas", lambda: replicas() == 1, delay + 15)
    # Not "still 4 right after backlog 0": a slow kubectl could read it after the delay ran out.
    # The drain-to-scale-down time says it: an early scale-down would come within a sample.
    waited = time.monotonic() - drained
    print(f"\nscale-down came {waited:.2f}s after the drain (delay {delay}s)")
    assert waited >= delay, "scaled down before the delay"
    eventually("a ScaledDown Event", lambda: events(kube, ns, "ScaledDown"), 10)


# ---------------------------------------------------------------------------------------------
# 6. Delete → children garbage-collected, no error in the operator's log.


def test_delete_garbage_collects_children(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn)
    apply(kube, ns, sample("production"))
    for kind, pattern in CHILDREN:
        eventually(kind, lambda k=kind, p=pattern: get(kube, ns, k, p.format("extract")), 10)
    kube.kubectl("-n", ns, "delete", "pqw", "extract", "--wait=true", "--timeout=30s")
    for kind, pattern in CHILDREN:
        eventually(
            f"{kind} garbage-collected",
            lambda k=kind, p=pattern: get(kube, ns, k, p.format("extract")) is None,
            30,
        )
    # Let the operator see the deletion before reading its log.
    eventually(
        "the deleted PgQueueWorker's metrics to go",
        lambda: 'pgqueueworker="extract"' not in operator_process.metrics(),
        10,
    )
    log = operator_process.logs()
    assert "ERROR" not in log, log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------------------------------------
# 7. Kill the operator mid-reconcile, change the spec while it is down, restart: it converges.


def test_killed_operator_resumes_and_converges_without_duplicates(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn)
    apply(kube, ns, sample("minimal"))
    operator_process.kill()  # most likely mid-reconcile: apply returned a few ms ago
    kube.kubectl("-n", ns, "patch", "pqw", "minimal", "--type=merge",
                 "-p", '{"spec": {"replicas": 2, "taskTimeLimitSeconds": 30}}')  # fmt: skip
    operator_process.start()

    def converged() -> bool:
        d = get(kube, ns, "deployment", "minimal-worker")
        pqw = get(kube, ns, "pqw", "minimal") or {}
        return (
            d is not None
            and d["spec"]["replicas"] == 2
            and env_of(d)["PGQUEUE_TASK_TIME_LIMIT"] == "30"
            and (pqw.get("status") or {}).get("observedGeneration") == pqw["metadata"]["generation"]
        )

    eventually("convergence after the restart", converged, 20)
    selector = "app.kubernetes.io/instance=minimal"
    for kind in ("deployments", "services", "cronjobs", "poddisruptionbudgets"):
        items = json.loads(kube.kubectl("-n", ns, "get", kind, "-l", selector, "-o", "json").stdout)
        assert len(items["items"]) == 1, (kind, [i["metadata"]["name"] for i in items["items"]])
    replicasets = json.loads(kube.kubectl("-n", ns, "get", "replicasets", "-o", "json").stdout)
    owners = {r["metadata"]["ownerReferences"][0]["name"] for r in replicasets["items"]}
    assert owners == {"minimal-worker"}


# ---------------------------------------------------------------------------------------------
# Paused, and a missing Secret: Degraded with a reason, retried, healed once it exists.


def test_paused_scales_to_zero_and_suspends_the_sweep(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn, gate=None)
    apply(kube, ns, sample("minimal", replicas=2))
    eventually(
        "2 replicas",
        lambda: (d := get(kube, ns, "deployment", "minimal-worker")) and d["spec"]["replicas"] == 2,
        10,
    )
    kube.kubectl(
        "-n", ns, "patch", "pqw", "minimal", "--type=merge", "-p", '{"spec": {"paused": true}}'
    )

    def paused() -> dict[str, Any] | None:
        d = get(kube, ns, "deployment", "minimal-worker") or {}
        c = get(kube, ns, "cronjob", "minimal-sweep") or {}
        pqw = get(kube, ns, "pqw", "minimal")
        ok = (
            d["spec"]["replicas"] == 0
            and c["spec"]["suspend"] is True
            and (condition(pqw, "Paused") or {}).get("status") == "True"
        )
        return pqw if ok else None

    pqw = eventually("paused: 0 replicas, sweep suspended, Paused=True", paused, 10)
    assert condition(pqw, "Ready")["reason"] == "Paused"  # type: ignore[index]
    assert pqw["status"]["replicas"] == 0  # type: ignore[index]


def test_a_paused_queue_shows_in_status_the_printer_column_and_metrics(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    """`pgqueue queue pause` (shared by every consumer of the queue) is not spec.paused: the
    pods stay, and the fleet's status, `kubectl get pqw` and the metrics say which queue is
    paused."""
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn, gate=None)
    apply(kube, ns, sample("minimal", replicas=2))

    def sampled(paused: str) -> dict[str, Any] | None:
        status = (get(kube, ns, "pqw", "minimal") or {}).get("status") or {}
        return status if status.get("pausedQueues") == paused else None

    eventually("a first sample, no queue paused", lambda: sampled(""), 15)
    labels = {"namespace": ns, "pgqueueworker": "minimal", "queue": "default"}
    assert metric(operator_process.metrics(), "pgqueue_queue_paused", **labels) == 0
    client = Client(pg_dsn)
    try:
        client.pause_queue("default", reason="k8s tier")
        status = eventually("status.pausedQueues == 'default'", lambda: sampled("default"), 15)
        assert status["depth"][0]["queue"] == "default" and status["depth"][0]["paused"] is True
        assert metric(operator_process.metrics(), "pgqueue_queue_paused", **labels) == 1
        table = kube.kubectl("-n", ns, "get", "pqw").stdout.splitlines()
        header = table[0].split()
        assert header == ["NAME", "READY", "REPLICAS", "DEPTH", "GATE", "PAUSED-QUEUES", "AGE"]
        # By the column's offset: an unset column (GATE here: no gate configured) prints blank.
        at = table[0].index("PAUSED-QUEUES")
        assert table[1][at:].split()[0] == "default", table
        # The fleet itself runs on: its pods are not scaled and it is not Paused.
        pqw = get(kube, ns, "pqw", "minimal")
        assert (condition(pqw, "Paused") or {}).get("status") == "False"
        deployment = get(kube, ns, "deployment", "minimal-worker")
        assert deployment is not None and deployment["spec"]["replicas"] == 2

        client.resume_queue("default")
        eventually("status.pausedQueues back to ''", lambda: sampled(""), 15)
        assert metric(operator_process.metrics(), "pgqueue_queue_paused", **labels) == 0
    finally:
        client.close()


def test_missing_secret_is_degraded_then_heals(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    apply(kube, ns, sample("minimal"))

    def degraded(reason: str, status: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            c = condition(get(kube, ns, "pqw", "minimal"), "Degraded") or {}
            return c if c.get("status") == status and c.get("reason") == reason else None

        return check

    c = eventually("Degraded=True, SecretNotFound", degraded("SecretNotFound", "True"), 10)
    assert "pgqueue-db" in c["message"]
    assert get(kube, ns, "deployment", "minimal-worker") is None  # nothing deployed without it
    eventually("a SecretNotFound Warning", lambda: events(kube, ns, "SecretNotFound"), 10)
    setup_database(kube, ns, pg_dsn, gate=None)
    eventually("Degraded=False after the Secret appears", degraded("Reconciled", "False"), 15)
    assert get(kube, ns, "deployment", "minimal-worker") is not None
    assert "Traceback" not in operator_process.logs()


def test_resync_timer_heals_drift_of_children_and_of_the_flag(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    setup_database(kube, ns, pg_dsn, gate="true")
    apply(kube, ns, sample("autoscaled", autoscaling=None, replicas=1))
    eventually("the flag on", lambda: (r := flag(pg_dsn)) and r[0], 10)
    eventually("the Deployment", lambda: get(kube, ns, "deployment", "autoscaled-worker"), 10)

    # Someone scales the Deployment by hand and turns the gate off behind the ConfigMap's back.
    kube.kubectl("-n", ns, "scale", "deployment", "autoscaled-worker", "--replicas=5")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgqueue.flag SET enabled = false, source = 'by hand'")

    # The resync interval is 5 s in these tests (PGQUEUE_OPERATOR_RESYNC_INTERVAL).
    eventually(
        "the Deployment back at 1 replica",
        lambda: (
            (d := get(kube, ns, "deployment", "autoscaled-worker")) and d["spec"]["replicas"] == 1
        ),
        15,
    )
    row = eventually("the flag back on", lambda: (r := flag(pg_dsn)) and r[0] and r, 15)
    assert row[2].startswith(f"configmap {ns}/pgqueue-gate@")
