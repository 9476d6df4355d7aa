"""Pod deletion costs from the worker registry: the decision (pure) and the part that applies it,
over a fake of the Kubernetes verbs (the real API server and registry are in tests/k8s)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from pgqueue_operator import metrics
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders import common
from pgqueue_operator.costing import DeletionCosts
from pgqueue_operator.deletioncost import ANNOTATION, STALE_AFTER, CostPatch, cost_of, plan
from tests.unit.operator.fakekube import UNREACHABLE_DSN, FakeKube
from tests.unit.operator.samples import body


@dataclass(frozen=True)
class Row:
    worker_id: str
    host: str = ""
    busy: int = 0
    heartbeat_age: float = 1.0


def pod(name: str, cost: str | None = None, **meta: Any) -> dict[str, Any]:
    annotations = {} if cost is None else {ANNOTATION: cost, "other": "kept"}
    return {"metadata": {"name": name, "annotations": annotations, **meta}}


def test_idle_pods_cost_least_busy_ones_by_running_tasks_unknown_in_between() -> None:
    stale = Row("stale", busy=0, heartbeat_age=STALE_AFTER + 1)
    rows = [Row("idle"), Row("one", busy=1), Row("three", busy=3), stale]
    pods = [pod(n) for n in ("three", "idle", "unseen", "one", "stale")]
    assert plan(pods, rows) == [
        CostPatch("idle", 0, None),
        CostPatch("one", 2, None),
        CostPatch("stale", 1, None),
        CostPatch("three", 4, None),
        CostPatch("unseen", 1, None),  # no row yet: not taken for idle
    ]


def test_a_stale_heartbeat_is_never_idle_even_when_it_last_said_so() -> None:
    assert cost_of([Row("p", heartbeat_age=STALE_AFTER)]) == 0
    assert cost_of([Row("p", heartbeat_age=STALE_AFTER + 0.1)]) == 1
    assert cost_of([Row("p", busy=2, heartbeat_age=600)]) == 1  # its busy count is not believed
    assert cost_of([]) == 1


def test_several_workers_in_one_pod_add_up_and_a_stale_one_makes_it_unknown() -> None:
    assert cost_of([Row("a", busy=1), Row("b", busy=2)]) == 4
    assert cost_of([Row("a"), Row("b", heartbeat_age=60)]) == 1
    assert cost_of([Row("a", busy=1), Row("b", heartbeat_age=60)]) == 2


def test_rows_match_the_pod_by_worker_id_then_by_hostname() -> None:
    rows = [Row("custom-id", host="w-1", busy=1), Row("w-2", host="elsewhere")]
    pods = [pod("w-1"), pod("w-2"), pod("w-3")]
    assert plan(pods, rows) == [
        CostPatch("w-1", 2, None),
        CostPatch("w-2", 0, None),
        CostPatch("w-3", 1, None),
    ]
    # spec.hostname is what the worker's gethostname() says
    named = {**pod("w-4"), "spec": {"hostname": "custom"}}
    assert plan([named], [Row("x", host="custom", busy=1)]) == [CostPatch("w-4", 2, None)]


def test_only_changed_costs_are_patched_and_terminating_pods_are_left_alone() -> None:
    rows = [Row("a"), Row("b", busy=1), Row("c", busy=1)]
    pods = [
        pod("a", "0"),
        pod("b", "0"),
        pod("c", "2"),
        pod("d", "5", deletionTimestamp="2026-12-02T08:00:00Z"),
    ]
    assert plan(pods, rows) == [CostPatch("b", 2, "0")]
    assert CostPatch("b", 2, "0").annotations() == {ANNOTATION: "2"}
    assert plan([pod("a", "0"), pod("b", "2"), pod("c", "2")], rows) == []


def fleet_labels(name: str = "w") -> dict[str, str]:
    return common.labels(common.Owner(name, "ns", "u"), "worker")


def errors() -> float:
    labels = {"namespace": "ns", "pgqueueworker": "w", "stage": "costs"}
    return metrics.REGISTRY.get_sample_value("pgqueue_operator_errors_total", labels) or 0.0


def test_an_unreachable_database_patches_nothing_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube({"db": UNREACHABLE_DSN})
    kube.put_pod("w-worker-1", fleet_labels())
    costs = DeletionCosts(kube, Deadlines(10.0))
    before = errors()
    with caplog.at_level(logging.WARNING, logger="pgqueue_operator.costing"):
        assert costs.update(body()) == []
        assert costs.update(body()) == []
    assert kube.annotated == []
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["pod deletion costs of ns/w not updated: OperationalError"]
    assert "S3cretPassw0rd" not in caplog.text
    assert errors() == before + 2


def test_no_pods_paused_or_invalid_reads_nothing() -> None:
    kube = FakeKube()  # no Secret: reading the database would fail loudly
    kube.put_pod("other-worker-1", fleet_labels("other"))
    costs = DeletionCosts(kube, Deadlines(10.0))
    assert costs.update(body()) == []  # no pod of this fleet
    kube.put_pod("w-worker-1", fleet_labels())
    assert costs.update(body(paused=True)) == []
    assert costs.update(body(queues=[])) == []
    assert kube.annotated == []
