"""The worker Deployment: ``pgqueue worker`` pods tuned by the derived timings.

Env follows the worker contract (``PGQUEUE_*``, DSN from the Secret by reference, never inlined).
Probes hit the worker's own endpoints on the metrics port: ``/healthz`` fails when the supervisor
heartbeat is older than H, ``/readyz`` when the worker cannot claim. The pod template carries a
checksum of the config and of the database Secret's identity (uid and resourceVersion, never its
data: a plain hash of a DSN could be reversed by a dictionary attack by anyone who can read
Deployments), so a Secret rotation rolls the pods.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pgqueue_operator.builders import common, pods
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.builders.pods import dsn_env
from pgqueue_operator.deriving import DerivedTimings
from pgqueue_operator.models import PgQueueWorkerSpec

CONTAINER = "worker"


def worker_env(spec: PgQueueWorkerSpec, derived: DerivedTimings) -> list[dict[str, Any]]:
    """The worker's env, in a stable order (the checksum and diffs depend on it)."""
    plain = {
        "PGQUEUE_QUEUES": ",".join(spec.queues),
        "PGQUEUE_TASKS": ",".join(spec.tasks),
        "PGQUEUE_CONCURRENCY": str(spec.concurrency),
        "PGQUEUE_POOL": spec.pool,
        "PGQUEUE_TASK_TIME_LIMIT": common.seconds(derived.task_time_limit_seconds),
        "PGQUEUE_LEASE": common.seconds(derived.lease_seconds),
        "PGQUEUE_MAX_ATTEMPTS": str(spec.timing.max_attempts),
        "PGQUEUE_RESULT_TTL": common.seconds(derived.result_ttl_seconds),
        "PGQUEUE_SHUTDOWN_GRACE": common.seconds(derived.drain_seconds),
        "PGQUEUE_HEARTBEAT_STALENESS": common.seconds(derived.heartbeat_staleness_seconds),
        "PGQUEUE_POLL_INTERVAL": common.seconds(derived.poll_interval_seconds),
        "PGQUEUE_METRICS_PORT": str(spec.metrics.port),
        "PGQUEUE_POOLED": "true" if spec.database.pooled else "false",
    }
    if spec.schedules:
        plain["PGQUEUE_SCHEDULES"] = json.dumps(
            [s.model_dump(exclude_defaults=True) for s in spec.schedules],
            separators=(",", ":"),
            sort_keys=True,
        )
    return [
        dsn_env(spec),
        *({"name": k, "value": v} for k, v in plain.items()),
        {"name": "PGQUEUE_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def migrate_env(spec: PgQueueWorkerSpec) -> list[dict[str, Any]]:
    """The ``pgqueue migrate`` init container's own variables (the user's follow them)."""
    return [
        dsn_env(spec),
        {"name": "PGQUEUE_POOLED", "value": "true" if spec.database.pooled else "false"},
    ]


def probes(spec: PgQueueWorkerSpec, derived: DerivedTimings) -> dict[str, Any]:
    """Liveness every H/2 (the worker's /healthz already encodes H), readiness every 5 s."""
    port = "metrics"
    period = max(1, math.ceil(derived.heartbeat_staleness_seconds / 2))
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 2,
            "failureThreshold": 60,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": period,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
    }


def build(
    spec: PgQueueWorkerSpec,
    derived: DerivedTimings,
    owner: Owner,
    *,
    replicas: int,
    secret_version: str,
) -> dict[str, Any]:
    """The Deployment; ``replicas`` is decided by the caller (spec, autoscaler, or 0 if paused).

    ``secret_version`` identifies the database Secret's current content (its uid and
    resourceVersion), so a rotation changes the pod-template checksum and rolls the pods.
    """
    env = worker_env(spec, derived)
    pod = spec.pod
    container = {
        **pods.container(spec, CONTAINER, ["worker"], env),
        "ports": [{"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"}],
        **probes(spec, derived),
    }
    pod_labels = {**pod.labels, **common.labels(owner, "worker")}
    annotations = {
        **pod.annotations,
        common.CHECKSUM_ANNOTATION: common.checksum(
            container["env"], container.get("envFrom"), spec.image, secret_version
        ),
    }
    pod_spec = {
        "terminationGracePeriodSeconds": derived.termination_grace_period_seconds,
        **pods.pod_spec(spec, [container, *(c.manifest() for c in pod.extra_containers)]),
    }
    if spec.migrate:
        migrate = pods.container(spec, "migrate", ["migrate"], migrate_env(spec))
        pod_spec["initContainers"] = [*pod_spec.get("initContainers", []), migrate]
    if pod.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = [dict(t) for t in pod.topology_spread_constraints]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(owner, common.worker_name(owner), "worker"),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": common.selector_labels(owner, "worker")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }
