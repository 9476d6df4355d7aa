"""The retention CronJob: ``pgqueue sweep`` deletes expired replies and aged dead letters.

``concurrencyPolicy: Forbid`` (two sweeps would only contend for the same rows); suspended while
the PgQueueWorker is paused. Replies carry their own expiry (set by the worker from R), so the sweep
needs only the dead-letter retention.
"""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.builders.deployment import dsn_env
from pgqueue_operator.deriving import DerivedTimings
from pgqueue_operator.models import PgQueueWorkerSpec

SWEEP_DEADLINE_SECONDS = 3600


def build(spec: PgQueueWorkerSpec, derived: DerivedTimings, owner: Owner) -> dict[str, Any]:
    pod = spec.pod
    container: dict[str, Any] = {
        "name": "sweep",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["sweep"],
        "env": [
            dsn_env(spec),
            {"name": "PGQUEUE_BATCH_SIZE", "value": str(spec.retention.sweep_batch_size)},
            {
                "name": "PGQUEUE_DEAD_LETTER_RETENTION",
                "value": str(spec.retention.dead_letter_retention_seconds),
            },
            {"name": "PGQUEUE_POOLED", "value": "true" if spec.database.pooled else "false"},
        ],
        "securityContext": common.restricted_security_context(),
    }
    if pod.resources:
        container["resources"] = dict(pod.resources)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "securityContext": common.pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [container],
    }
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": common.metadata(owner, common.sweep_name(owner), "sweep"),
        "spec": {
            "schedule": derived.sweep_schedule,
            "concurrencyPolicy": "Forbid",
            "suspend": spec.paused,
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": common.labels(owner, "sweep")},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": SWEEP_DEADLINE_SECONDS,
                    "template": {
                        "metadata": {"labels": common.labels(owner, "sweep")},
                        "spec": pod_spec,
                    },
                },
            },
        },
    }
