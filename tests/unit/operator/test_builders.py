"""Builders: a spec in, manifests out, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue_operator.autoscaling import effective_replicas
from pgqueue_operator.builders import common, cronjob, deployment, pdb, service, servicemonitor
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.deriving import derive
from pgqueue_operator.models import PgQueueWorkerSpec

OWNER = Owner(name="extract", namespace="jobs", uid="1234-abcd")


def spec(**overrides: Any) -> PgQueueWorkerSpec:
    base: dict[str, Any] = {
        "image": "worker:dev",
        "queues": ["extract", "bulk"],
        "tasks": ["app.tasks", "app.more"],
        "database": {"secretName": "db", "key": "url"},
        "taskTimeLimitSeconds": 120,
    }
    base.update(overrides)
    return PgQueueWorkerSpec.model_validate(base)


def build_deployment(s: PgQueueWorkerSpec, *, secret: str = "uid-1/41", replicas: int = 1) -> Any:
    return deployment.build(s, derive(s), OWNER, replicas=replicas, secret_version=secret)


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def all_children(s: PgQueueWorkerSpec) -> list[dict[str, Any]]:
    d = derive(s)
    out = [
        build_deployment(s),
        service.build(s, OWNER),
        cronjob.build(s, d, OWNER),
        pdb.build(s, OWNER),
        servicemonitor.build(s, OWNER),
    ]
    return [m for m in out if m is not None]


def test_every_child_has_owner_reference_labels_and_deterministic_name() -> None:
    s = spec(metrics={"serviceMonitor": {"enabled": True}})
    names = {}
    for manifest in all_children(s):
        meta = manifest["metadata"]
        assert meta["namespace"] == "jobs"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "pgqueue.dev/v1alpha1",
                "kind": "PgQueueWorker",
                "name": "extract",
                "uid": "1234-abcd",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "pgqueue"
        assert labels["app.kubernetes.io/instance"] == "extract"
        assert labels["app.kubernetes.io/managed-by"] == "pgqueue-operator"
        assert labels["app.kubernetes.io/part-of"] == "pgqueue"
        assert "app.kubernetes.io/component" in labels
        names[manifest["kind"]] = meta["name"]
    assert names == {
        "Deployment": "extract-worker",
        "Service": "extract-metrics",
        "CronJob": "extract-sweep",
        "PodDisruptionBudget": "extract-worker",
        "ServiceMonitor": "extract-metrics",
    }
    assert all_children(s) == all_children(s)  # deterministic


def test_deployment_runs_pgqueue_worker_with_the_derived_env() -> None:
    s = spec(timing={"leaseSeconds": 30, "pollIntervalSeconds": 0.5}, concurrency=4)
    d = build_deployment(s)
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker"]
    assert container["image"] == "worker:dev"
    env = env_of(d)
    assert env["PGQUEUE_DSN"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert env["PGQUEUE_QUEUES"] == "extract,bulk"
    assert env["PGQUEUE_TASKS"] == "app.tasks,app.more"
    assert env["PGQUEUE_CONCURRENCY"] == "4"
    assert env["PGQUEUE_POOL"] == "process"
    assert env["PGQUEUE_TASK_TIME_LIMIT"] == "120"
    assert env["PGQUEUE_LEASE"] == "30"
    assert env["PGQUEUE_MAX_ATTEMPTS"] == "5"
    assert env["PGQUEUE_RESULT_TTL"] == "3600"
    assert env["PGQUEUE_SHUTDOWN_GRACE"] == "120"
    assert env["PGQUEUE_HEARTBEAT_STALENESS"] == "10"
    assert env["PGQUEUE_POLL_INTERVAL"] == "0.5"
    assert env["PGQUEUE_METRICS_PORT"] == "9100"
    assert env["PGQUEUE_POOLED"] == "false"
    assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 135


def test_the_inline_pool_reaches_the_worker() -> None:
    assert env_of(build_deployment(spec(pool="inline")))["PGQUEUE_POOL"] == "inline"


def test_no_secret_value_is_inlined_anywhere() -> None:
    s = spec()
    text = repr(all_children(s))
    assert "postgresql://" not in text


def test_probes_hit_the_worker_endpoints_on_the_metrics_port() -> None:
    d = build_deployment(spec(metrics={"port": 9200}))
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["periodSeconds"] == 5  # H/2 with H = 10


def test_pods_are_non_root_with_a_read_only_root_filesystem() -> None:
    pod = build_deployment(spec())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}


def test_migrate_init_container_is_optional() -> None:
    with_migrate = build_deployment(spec())["spec"]["template"]["spec"]
    assert with_migrate["initContainers"][0]["args"] == ["migrate"]
    without = build_deployment(spec(migrate=False))["spec"]["template"]["spec"]
    assert "initContainers" not in without


def test_checksum_annotation_changes_with_the_secret_version_and_config_only() -> None:
    s = spec()

    def annotation(d: dict[str, Any]) -> str:
        return str(d["spec"]["template"]["metadata"]["annotations"][common.CHECKSUM_ANNOTATION])

    base = annotation(build_deployment(s, secret="uid-1/41"))
    assert annotation(build_deployment(s, secret="uid-1/41")) == base
    assert annotation(build_deployment(s, secret="uid-1/42")) != base  # a rotation rolls
    assert annotation(build_deployment(s, secret="uid-2/41")) != base  # a re-created Secret
    assert annotation(build_deployment(spec(taskTimeLimitSeconds=60))) != base
    assert annotation(build_deployment(s, replicas=5)) == base  # scaling does not roll pods


def test_pod_overrides_pass_through() -> None:
    s = spec(
        pod={
            "resources": {"requests": {"cpu": "100m"}},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "annotations": {"team": "backend"},
            "labels": {"tier": "batch"},
            "serviceAccountName": "workers",
            "priorityClassName": "high",
            "imagePullSecrets": ["regcred"],
        }
    )
    template = build_deployment(s)["spec"]["template"]
    pod = template["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m"}}
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["serviceAccountName"] == "workers"
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["annotations"]["team"] == "backend"
    assert template["metadata"]["labels"]["tier"] == "batch"
    # the selector labels cannot be overridden
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "extract"


def test_selector_matches_the_pod_labels_and_the_service() -> None:
    s = spec()
    d = build_deployment(s)
    selector = d["spec"]["selector"]["matchLabels"]
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert service.build(s, OWNER)["spec"]["selector"] == selector
    assert pdb.build(s, OWNER)["spec"]["selector"]["matchLabels"] == selector  # type: ignore[index]
    assert common.selector_string(OWNER) == ",".join(
        f"{k}={v}" for k, v in sorted(selector.items())
    )


def test_cronjob_sweeps_with_forbid_and_the_retention_env() -> None:
    s = spec(retention={"deadLetterRetentionSeconds": 86400, "sweepBatchSize": 500})
    job = cronjob.build(s, derive(s), OWNER)
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["schedule"] == "*/15 * * * *"
    assert job["spec"]["suspend"] is False
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["sweep"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["PGQUEUE_DSN"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert env["PGQUEUE_BATCH_SIZE"] == "500"
    assert env["PGQUEUE_DEAD_LETTER_RETENTION"] == "86400"


def test_paused_scales_to_zero_and_suspends_the_sweep() -> None:
    s = spec(paused=True, replicas=3)
    assert effective_replicas(s, {}) == 0
    assert cronjob.build(s, derive(s), OWNER)["spec"]["suspend"] is True


@pytest.mark.parametrize(
    ("overrides", "status", "replicas"),
    [
        ({"replicas": 3}, {}, 3),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, {}, 2),
        (
            {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}},
            {"autoscaling": {"desiredReplicas": 4}},
            4,
        ),
        (
            {"autoscaling": {"minReplicas": 2, "maxReplicas": 3}},
            {"autoscaling": {"desiredReplicas": 9}},
            3,
        ),
    ],
)
def test_effective_replicas(
    overrides: dict[str, Any], status: dict[str, Any], replicas: int
) -> None:
    assert effective_replicas(spec(**overrides), status) == replicas


def test_optional_children_are_none_when_disabled() -> None:
    s = spec(podDisruptionBudget={"enabled": False})
    assert pdb.build(s, OWNER) is None
    assert servicemonitor.build(s, OWNER) is None
    monitor = servicemonitor.build(
        spec(
            metrics={"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"p": "x"}}}
        ),
        OWNER,
    )
    assert monitor is not None
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitor["metadata"]["labels"]["p"] == "x"


def test_schedules_reach_the_worker_as_settings_it_reads() -> None:
    from pgqueue.settings import WorkerSettings

    assert "PGQUEUE_SCHEDULES" not in env_of(build_deployment(spec()))
    s = spec(
        schedules=[
            {"task": "app.report", "cron": "30 2 * * *", "tz": "Europe/Paris", "catchUp": "all",
             "kwargs": {"kind": "full", "n": [1, 2]}},
            {"task": "app.ping", "cron": "*/10 * * * * *", "queue": "bulk", "key": "ping-fast"},
        ]
    )  # fmt: skip
    value = env_of(build_deployment(s))["PGQUEUE_SCHEDULES"]
    read = WorkerSettings(schedules=value).schedules  # type: ignore[arg-type]
    assert [(r.task, r.cron, r.tz, r.catch_up, r.queue, r.key) for r in read] == [
        ("app.report", "30 2 * * *", "Europe/Paris", "all", "default", ""),
        ("app.ping", "*/10 * * * * *", "UTC", "latest", "bulk", "ping-fast"),
    ]
    assert read[0].kwargs == {"kind": "full", "n": [1, 2]}
    assert read[1].kwargs == {}


def test_a_schedule_with_a_typo_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="catchUp"):
        spec(schedules=[{"task": "t", "cron": "* * * * *", "catchUp": "sometimes"}])
    with pytest.raises(ValueError, match="cronn"):
        spec(schedules=[{"task": "t", "cronn": "* * * * *"}])
