"""The autoscaler's decision (pure, the clock passed in)."""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue_operator.autoscaling import ScaleState, decide, wanted
from pgqueue_operator.models import Autoscaling

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POLICY = Autoscaling(
    min_replicas=1, max_replicas=5, target_backlog_per_replica=100, scale_down_delay_seconds=60
)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("backlog_now", "replicas"), [(0, 1), (1, 1), (100, 1), (101, 2), (450, 5), (10_000, 5)]
)
def test_wanted_is_ceil_of_backlog_per_target_clamped(backlog_now: int, replicas: int) -> None:
    assert wanted(POLICY, backlog_now) == replicas


def test_first_decision_takes_the_wanted_replicas() -> None:
    assert decide(POLICY, 350, None, T0).desired == 4


def test_scale_up_is_immediate() -> None:
    state = decide(POLICY, 1000, ScaleState(1), at(0))
    assert state.desired == 5
    assert state.below_since is None
    assert state.last_scale_time == at(0)


def test_scale_down_waits_for_the_delay_without_interruption() -> None:
    state = ScaleState(5)
    state = decide(POLICY, 0, state, at(0))
    assert (state.desired, state.below_since) == (5, at(0))
    state = decide(POLICY, 0, state, at(59))
    assert state.desired == 5
    state = decide(POLICY, 0, state, at(60))
    assert state.desired == 1
    assert state.below_since is None


def test_a_burst_resets_the_scale_down_clock() -> None:
    state = decide(POLICY, 0, ScaleState(5), at(0))
    state = decide(POLICY, 500, state, at(30))  # back at 5: wanted == current
    assert state.below_since is None
    state = decide(POLICY, 0, state, at(40))
    state = decide(POLICY, 0, state, at(90))
    assert state.desired == 5  # only 50 s below
    assert decide(POLICY, 0, state, at(100)).desired == 1


def test_bounds_moved_by_a_spec_change_apply_at_once() -> None:
    tighter = POLICY.model_copy(update={"max_replicas": 2})
    assert decide(tighter, 1000, ScaleState(5), T0).desired == 2


def test_state_round_trips_through_status() -> None:
    state = ScaleState(3, at(5), at(1))
    assert ScaleState.from_status(state.as_status()) == state
    assert ScaleState.from_status(None) is None
