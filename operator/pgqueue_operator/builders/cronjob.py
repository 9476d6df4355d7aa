"""The retention CronJob: ``pgqueue sweep`` deletes expired replies and aged dead letters.

``concurrencyPolicy: Forbid`` (two sweeps would only contend for the same rows); suspended while
the PgQueueWorker is paused. Replies carry their own expiry (set by the worker from R), so the sweep
needs only the dead-letter retention. Its pods share the workers' env, envFrom, volumes, init
containers and placement (:mod:`~pgqueue_operator.builders.pods`): the sweep connects to the same
database with the same certificates and settings.
"""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common, pods
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.builders.pods import dsn_env
from pgqueue_operator.deriving import DerivedTimings
from pgqueue_operator.models import PgQueueWorkerSpec

SWEEP_DEADLINE_SECONDS = 3600


def build(spec: PgQueueWorkerSpec, derived: DerivedTimings, owner: Owner) -> dict[str, Any]:
    env = [
        dsn_env(spec),
        {"name": "PGQUEUE_BATCH_SIZE", "value": str(spec.retention.sweep_batch_size)},
        {
            "name": "PGQUEUE_DEAD_LETTER_RETENTION",
            "value": str(spec.retention.dead_letter_retention_seconds),
        },
        {"name": "PGQUEUE_POOLED", "value": "true" if spec.database.pooled else "false"},
    ]
    pod_spec = {
        "restartPolicy": "OnFailure",
        **pods.pod_spec(spec, [pods.container(spec, "sweep", ["sweep"], env)]),
    }
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
