"""Status that follows the owned Deployment and CronJob (issue 17 item 7), without a cluster.

The watch itself runs against a real API server and a real kubelet in tests/k8s/test_operator.py
and tests/e2e/test_migration_day_node.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgqueue_operator import following
from tests.unit.operator.samples import body

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OWNER = {
    "apiVersion": "pgqueue.dev/v1alpha1",
    "kind": "PgQueueWorker",
    "name": "w",
    "uid": "u-1",
    "controller": True,
}


def deployment(ready: int, updated: int = 2, *, generation: int = 3, observed: int = 3,
               owner: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {
            "name": "w-worker",
            "generation": generation,
            "ownerReferences": [owner or OWNER],
        },
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
        },
    }


def conditions_after(worker: dict[str, Any], child: dict[str, Any]) -> dict[str, tuple[str, str]]:
    result = following.from_deployment(worker, child)
    assert result is not None
    patch = result.status_patch(worker, NOW)
    return {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}


def test_ready_follows_the_deployments_ready_pods() -> None:
    worker = body(replicas=2)
    assert conditions_after(worker, deployment(1))["Ready"] == ("False", "PodsNotReady")
    assert conditions_after(worker, deployment(2))["Ready"] == ("True", "PodsReady")
    result = following.from_deployment(worker, deployment(2))
    assert result is not None
    assert result.status == {"replicas": 2, "readyReplicas": 2}


def test_progressing_until_the_deployment_observed_and_updated_every_pod() -> None:
    worker = body(replicas=2)
    assert conditions_after(worker, deployment(2, 1))["Progressing"] == ("True", "RollingOut")
    unobserved = deployment(2, 2, generation=4, observed=3)
    assert conditions_after(worker, unobserved)["Progressing"] == ("True", "RollingOut")
    assert conditions_after(worker, deployment(2, 2))["Progressing"] == (
        "False",
        "RolloutComplete",
    )


def test_paused_and_scaled_to_zero_are_said_as_such() -> None:
    assert conditions_after(body(paused=True), deployment(0))["Ready"] == ("False", "Paused")
    assert conditions_after(body(replicas=0), deployment(0))["Ready"] == ("True", "ScaledToZero")


def test_nothing_is_said_for_a_child_not_its_own_a_deleted_worker_or_an_invalid_spec() -> None:
    stranger = deployment(2, owner={**OWNER, "uid": "u-other"})  # a namesake's leftover
    assert following.from_deployment(body(replicas=2), stranger) is None
    deleting = body(replicas=2)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert following.from_deployment(deleting, deployment(2)) is None
    assert following.from_deployment(body(taskTimeLimitSeconds=-1), deployment(2)) is None


def test_owner_name_is_the_controlling_pgqueueworker() -> None:
    assert following.owner_name(deployment(1)) == "w"
    foreign = {"metadata": {"ownerReferences": [{**OWNER, "apiVersion": "apps/v1"}]}}
    assert following.owner_name(foreign) is None
    assert (
        following.owner_name({"metadata": {"ownerReferences": [{**OWNER, "controller": False}]}})
        is None
    )
    assert following.owner_name({"metadata": {}}) is None


def test_last_sweep_follows_the_cronjob() -> None:
    cron = {
        "metadata": {"ownerReferences": [OWNER]},
        "status": {"lastSuccessfulTime": "2026-01-01T00:05:00Z"},
    }
    result = following.from_cronjob(body(), cron)
    assert result is not None and result.status == {"lastSweep": "2026-01-01T00:05:00Z"}
    assert following.from_cronjob(body(), {**cron, "status": {}}) is None


def test_a_status_already_written_is_not_written_again() -> None:
    worker = body(replicas=2)
    result = following.from_deployment(worker, deployment(2))
    assert result is not None
    patch = result.status_patch(worker, NOW)
    assert following.writes_anything(worker, patch)
    written = {**worker, "status": patch}
    again = following.from_deployment(written, deployment(2))
    assert again is not None
    assert not following.writes_anything(written, again.status_patch(written, NOW))
