"""Results are decisions: merged, then turned into one status patch on the object as it is."""

from __future__ import annotations

import datetime as dt

from pgqueue_operator.conditions import Change
from pgqueue_operator.decisions import Event, Rescale, Result
from tests.unit.operator.samples import body

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=1)


def test_merge_lets_the_later_result_win_and_adds_up_events() -> None:
    reconciled = Result(
        status={"replicas": 2, "backlog": 0},
        changes=[Change("Ready", "False", "PodsNotReady")],
        events=[Event("Warning", "GateValueInvalid", "maybe")],
        retry="writing the gate flag failed",
    )
    sampled = Result(
        status={"backlog": 300},
        changes=[Change("Ready", "True", "PodsReady")],
        events=[Event("Normal", "ScaledUp", "1 -> 3")],
        rescale=Rescale(3),
    )
    merged = reconciled.merge(sampled)
    assert merged.status == {"replicas": 2, "backlog": 300}
    assert [e.reason for e in merged.events] == ["GateValueInvalid", "ScaledUp"]
    assert merged.rescale == Rescale(3)
    assert merged.retry == "writing the gate flag failed"
    patch = merged.status_patch(body(), T0)
    assert [(c["type"], c["status"]) for c in patch["conditions"]] == [("Ready", "True")]


def test_status_patch_merges_conditions_into_the_objects_own() -> None:
    current = body()
    current["status"] = Result(
        changes=[Change("Ready", "False", "PodsNotReady"), Change("Paused", "False", "Running")]
    ).status_patch(current, T0)
    patch = Result(changes=[Change("Ready", "True", "PodsReady", "1/1")]).status_patch(current, T1)
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert by_type["Paused"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # kept as it was
    assert by_type["Ready"]["observedGeneration"] == 4


def test_a_result_without_changes_leaves_the_conditions_alone() -> None:
    assert Result(status={"backlog": 5}).status_patch(body(), T0) == {"backlog": 5}
    assert Result().status_patch(body(), T0) == {}


def test_applied_to_is_the_object_with_the_new_status_fields() -> None:
    current = body()
    current["status"] = {"replicas": 1, "autoscaling": {"desiredReplicas": 1}}
    after = Result(status={"autoscaling": {"desiredReplicas": 3}}).applied_to(current)
    assert after["status"] == {"replicas": 1, "autoscaling": {"desiredReplicas": 3}}
    assert after["spec"] == current["spec"]
    assert current["status"]["autoscaling"] == {"desiredReplicas": 1}  # the input is not changed
