"""Reconcile logic over an in-memory fake of the operator's Kubernetes verbs (no cluster).

The fake stores applied manifests by (kind, namespace, name), as server-side apply would; the
real API server is exercised by tests/k8s/test_operator.py.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from pgqueue_operator.builders.common import CHECKSUM_ANNOTATION
from pgqueue_operator.errors import ApplyError, SecretError
from pgqueue_operator.kube import SecretValue
from pgqueue_operator.reconciling import Reconciler

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class FakeKube:
    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for name, dsn in (secrets or {}).items():
            self.put_secret(name, dsn)
        self.applied: list[tuple[str, str]] = []
        self.fail_kind: str | None = None

    def put_secret(self, name: str, dsn: str) -> None:
        """Create or update a Secret: its resourceVersion moves, as the API server's would."""
        old = self.objects.get(("Secret", "ns", name))
        version = 1 + int(old["metadata"]["resourceVersion"]) if old else 1
        self.objects[("Secret", "ns", name)] = {
            "metadata": {"uid": f"uid-{name}", "resourceVersion": str(version)},
            "data": {"dsn": base64.b64encode(dsn.encode()).decode()},
        }

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, meta = manifest["kind"], manifest["metadata"]
        if kind == self.fail_kind:
            raise ApplyError(f"applying {kind} failed")
        self.applied.append((kind, meta["name"]))
        live = {**manifest, "metadata": {**meta, "generation": 1}, "status": {}}
        self.objects[(kind, meta["namespace"], meta["name"])] = live
        return live

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return self.objects.pop((kind, namespace, name), None) is not None

    def secret_value(self, namespace: str, name: str, key: str) -> SecretValue:
        secret = self.objects.get(("Secret", namespace, name))
        if secret is None:
            raise SecretError(f"Secret {namespace}/{name} not found")
        meta = secret["metadata"]
        value = base64.b64decode(secret["data"][key]).decode()
        return SecretValue(value, f"{meta['uid']}/{meta['resourceVersion']}")


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "worker:dev",
        "queues": ["default"],
        "tasks": ["app.tasks"],
        "database": {"secretName": "db"},
        "taskTimeLimitSeconds": 300,
    }
    base.update(spec)
    return {
        "apiVersion": "pgqueue.dev/v1alpha1",
        "kind": "PgQueueWorker",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "generation": 4},
        "spec": base,
    }


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(kube)  # type: ignore[arg-type]


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


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
    status = result.status
    assert status["observedGeneration"] == 4
    assert status["replicas"] == 1
    assert status["derived"]["terminationGracePeriodSeconds"] == 315
    assert conditions_of(status)["Degraded"] == ("False", "Reconciled")
    assert conditions_of(status)["Ready"] == ("False", "PodsNotReady")
    assert conditions_of(status)["Paused"] == ("False", "Running")
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


def test_reconcile_is_idempotent() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    first = reconciler(kube).reconcile(body(), NOW)
    snapshot = dict(kube.objects)
    again = body()
    again["status"] = first.status
    second = reconciler(kube).reconcile(again, NOW + dt.timedelta(minutes=1))
    assert kube.objects == snapshot
    assert second.status["conditions"] == first.status["conditions"]  # no flip, same times


def test_invalid_spec_deploys_nothing_and_is_degraded() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    result = reconciler(kube).reconcile(body(retention={"resultTtlSeconds": 10}), NOW)
    assert kube.applied == []
    assert result.retry is None  # waits for a spec change
    assert conditions_of(result.status)["Degraded"] == ("True", "RetentionBelowCallerTimeout")
    assert [e.type for e in result.events] == ["Warning"]


def test_missing_secret_is_degraded_and_retried() -> None:
    kube = FakeKube()
    result = reconciler(kube).reconcile(body(), NOW)
    assert kube.applied == []
    assert result.retry is not None
    assert conditions_of(result.status)["Degraded"] == ("True", "SecretNotFound")
    assert result.events[0].reason == "SecretNotFound"


def test_apply_failure_is_degraded_and_retried() -> None:
    kube = FakeKube({"db": "postgresql://x"})
    kube.fail_kind = "CronJob"
    result = reconciler(kube).reconcile(body(), NOW)
    assert result.retry is not None
    assert conditions_of(result.status)["Degraded"] == ("True", "ApplyFailed")


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
    assert conditions_of(result.status)["Paused"] == ("True", "Paused")
    assert conditions_of(result.status)["Ready"] == ("False", "Paused")


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
