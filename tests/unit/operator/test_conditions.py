"""Conditions follow the API conventions: lastTransitionTime moves only when status flips."""

from __future__ import annotations

import datetime as dt

from pgqueue_operator import conditions
from pgqueue_operator.conditions import Change

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_new_condition_gets_all_fields() -> None:
    out = conditions.apply(
        None, [Change("Ready", "False", "PodsNotReady", "0/1")], generation=3, now=T0
    )
    assert out == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "PodsNotReady",
            "message": "0/1",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_same_status_keeps_transition_time_but_refreshes_reason_and_generation() -> None:
    first = conditions.apply(None, [Change("Ready", "False", "A", "a")], generation=1, now=T0)
    second = conditions.apply(first, [Change("Ready", "False", "B", "b")], generation=2, now=T1)
    assert second[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert second[0]["reason"] == "B"
    assert second[0]["observedGeneration"] == 2


def test_flip_moves_transition_time() -> None:
    first = conditions.apply(None, [Change("Ready", "False", "A")], generation=1, now=T0)
    flipped = conditions.apply(first, [Change("Ready", "True", "PodsReady")], generation=1, now=T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"


def test_untouched_conditions_survive_and_order_is_stable() -> None:
    first = conditions.apply(None, [Change("GateSynced", "True", "Synced")], generation=1, now=T0)
    out = conditions.apply(
        first,
        [Change("Paused", "False", "Running"), Change("Ready", "True", "PodsReady")],
        generation=1,
        now=T1,
    )
    assert [c["type"] for c in out] == ["Ready", "GateSynced", "Paused"]
    assert conditions.is_true(out, "GateSynced")
    assert not conditions.is_true(out, "Degraded")
    assert conditions.find(out, "Paused") is not None
