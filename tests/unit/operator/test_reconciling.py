"""Reconcile logic over an in-memory fake of the operator's Kubernetes verbs (no cluster).

The real API server is exercised by tests/k8s/test_operator.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders.common import CHECKSUM_ANNOTATION
from pgqueue_operator.decisions import Result
from pgqueue_operator.reconciling import Reconciler
from tests.unit.operator.fakekube import UNREACHABLE_DSN, FakeKube
from tests.unit.operator.samples import body

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(kube, Deadlines(10.0))


def conditions_of(result: Result, on: dict[str, Any] | None = None) -> dict[str, tuple[str, str]]:
    """The conditions ``result`` leaves on ``on`` (a fresh object by default)."""
    patch = result.status_patch(on or body(), NOW)
    return {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}


def test_reconcile_applies_every_child_and_reports_status() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    result = reconciler(kube).reconcile(body(), NOW)
    assert result.retry is None
    assert sorted(kube.applied) == sorted(
        [
            ("Deployment", "w-worker"),
            ("Service", "w-metrics"),
            ("CronJob", "w-sweep"),
            ("PodDisruptionBudget", "w-worker"),
        ]
    )
    status = result.status_patch(body(), NOW)
    assert status["observedGeneration"] == 4
    assert status["replicas"] == 1
    assert status["derived"]["terminationGracePeriodSeconds"] == 315
    assert conditions_of(result)["Degraded"] == ("False", "Reconciled")
    assert conditions_of(result)["Ready"] == ("False", "PodsNotReady")
    assert conditions_of(result)["Paused"] == ("False", "Running")
    assert "GateSynced" not in conditions_of(result)  # no gate in the spec
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


def test_reconcile_is_idempotent() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    first = reconciler(kube).reconcile(body(), NOW).status_patch(body(), NOW)
    snapshot = dict(kube.objects)
    again = body()
    again["status"] = first
    later = NOW + dt.timedelta(minutes=1)
    second = reconciler(kube).reconcile(again, later).status_patch(again, later)
    assert kube.objects == snapshot
    assert second["conditions"] == first["conditions"]  # no flip, same times


def test_invalid_spec_deploys_nothing_and_is_degraded() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    result = reconciler(kube).reconcile(body(retention={"resultTtlSeconds": 10}), NOW)
    assert kube.applied == []
    assert result.retry is None  # waits for a spec change
    assert conditions_of(result)["Degraded"] == ("True", "RetentionBelowCallerTimeout")
    assert conditions_of(result)["Ready"] == ("False", "RetentionBelowCallerTimeout")
    assert [e.type for e in result.events] == ["Warning"]
    assert result.status == {}  # nothing derived, nothing observed


def test_missing_secret_is_degraded_and_retried() -> None:
    kube = FakeKube()
    result = reconciler(kube).reconcile(body(), NOW)
    assert kube.applied == []
    assert result.retry is not None
    assert conditions_of(result)["Degraded"] == ("True", "SecretNotFound")
    assert result.events[0].reason == "SecretNotFound"


def test_apply_failure_is_degraded_and_retried() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    kube.fail_kind = "CronJob"
    result = reconciler(kube).reconcile(body(), NOW)
    assert result.retry is not None
    assert conditions_of(result)["Degraded"] == ("True", "ApplyFailed")


@pytest.mark.parametrize(("enabled", "present"), [(True, True), (False, False)])
def test_disabled_pdb_is_deleted(enabled: bool, present: bool) -> None:
    kube = FakeKube({"db": "postgresql://x"})
    reconciler(kube).reconcile(body(), NOW)
    reconciler(kube).reconcile(body(podDisruptionBudget={"enabled": enabled}), NOW)
    assert (("PodDisruptionBudget", "ns", "w-worker") in kube.objects) is present


def test_paused_scales_to_zero_and_reports_it() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    result = reconciler(kube).reconcile(body(paused=True, replicas=3), NOW)
    assert kube.objects[("Deployment", "ns", "w-worker")]["spec"]["replicas"] == 0
    assert kube.objects[("CronJob", "ns", "w-sweep")]["spec"]["suspend"] is True
    assert conditions_of(result)["Paused"] == ("True", "Paused")
    assert conditions_of(result)["Ready"] == ("False", "Paused")


def test_a_secret_rotation_rolls_the_pods_and_the_dsn_is_in_no_manifest() -> None:
    kube = FakeKube({"db": "postgresql://app:S3cretPassw0rd@db/app"})

    def checksum() -> str:
        deployment = kube.objects[("Deployment", "ns", "w-worker")]
        return str(deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    reconciler(kube).reconcile(body(), NOW)
    first = checksum()
    reconciler(kube).reconcile(body(), NOW)
    assert checksum() == first  # a resync of an unchanged Secret changes nothing
    kube.put_secret("db", "postgresql://app:R0tated@db/app")
    reconciler(kube).reconcile(body(), NOW)
    assert checksum() != first
    written = repr({k: v for k, v in kube.objects.items() if k[0] != "Secret"})
    for secret_text in ("S3cretPassw0rd", "R0tated", "postgresql://"):
        assert secret_text not in written


def test_a_later_reconcile_keeps_the_transition_time_of_an_unflipped_condition() -> None:
    kube = FakeKube()
    missing = reconciler(kube).reconcile(body(), NOW).status_patch(body(), NOW)
    kube.put_secret("db", "postgresql://x")
    again = body()
    again["status"] = missing
    later = NOW + dt.timedelta(minutes=5)
    healed = reconciler(kube).reconcile(again, later).status_patch(again, later)
    times = {c["type"]: c["lastTransitionTime"] for c in healed["conditions"]}
    assert times["Degraded"] == "2026-01-01T00:05:00Z"  # True -> False: it moved
    assert times["Ready"] == "2026-01-01T00:00:00Z"  # False -> False: it did not


def test_the_gate_is_synced_by_each_reconcile_and_a_dead_database_retries() -> None:
    kube = FakeKube({"db": UNREACHABLE_DSN})
    kube.put_configmap("gate", {"pg_queue_enabled": "on"})
    result = reconciler(kube).reconcile(body(gate={"configMapName": "gate"}), NOW)
    assert ("Deployment", "w-worker") in kube.applied  # the children do not wait for the gate
    assert conditions_of(result)["Degraded"] == ("False", "Reconciled")
    assert conditions_of(result)["GateSynced"] == ("False", "DatabaseUnavailable")
    assert result.retry == "writing the gate flag failed: OperationalError"
    assert "gate" not in result.status  # status.gate says what was written; nothing was
