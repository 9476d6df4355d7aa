"""When a polling caller reads its reply row (pgqueue.replypacing): the schedule as a pure
function, run here on a simulated clock where a poll takes no time."""

from __future__ import annotations

import itertools

import pytest

from pgqueue.replypacing import KEYS, LEAD, STEP, ReplyTimes, pause, sample
from pgqueue.settings import ClientSettings

DEFAULTS = ClientSettings(dsn="host=unused")
KEY = ("default", "demo.echo")


def schedule(polls: int, typical: float | None) -> float:
    s = DEFAULTS
    return pause(polls, typical, s.poll_initial, s.poll_flat, s.poll_max)


def simulate(stored: float, typical: float | None) -> tuple[int, float, float]:
    """A call whose reply is stored ``stored`` seconds into its wait: (polls it made, when the
    poll that found the reply ran, when the last one that found nothing ran, or 0)."""
    now, polls, last_empty = 0.0, 0, 0.0
    while True:
        now += schedule(polls, typical)
        polls += 1
        if now >= stored:
            return polls, now, last_empty
        last_empty = now


def call(times: ReplyTimes, stored: float) -> tuple[int, float]:
    """One call on the schedule ``times`` gives, recorded as the client records it."""
    polls, seen, last_empty = simulate(stored, times.typical(KEY))
    times.record(KEY, sample(last_empty, seen))
    return polls, seen


def test_without_a_record_the_schedule_is_the_fixed_one() -> None:
    # A poll at once, poll_flat (6) polls poll_initial (1 ms) apart, then doubling to poll_max.
    pauses = [schedule(n, None) for n in range(16)]
    ms = [0, 1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 32, 64, 128, 200, 200]
    assert pauses == pytest.approx([m / 1000 for m in ms])


def test_with_a_record_the_first_poll_waits_for_most_of_the_typical_wait() -> None:
    typical = 0.08
    assert schedule(0, typical) == pytest.approx(LEAD * typical)
    flat = [schedule(n, typical) for n in range(1, DEFAULTS.poll_flat + 1)]
    assert flat == pytest.approx([STEP * typical] * DEFAULTS.poll_flat)
    after = [schedule(DEFAULTS.poll_flat + n, typical) for n in range(1, 4)]
    assert after == pytest.approx([0.02, 0.04, 0.08])


@pytest.mark.parametrize("typical", [None, 1e-6, 0.002, 0.5, 30.0, 3600.0])
def test_no_gap_between_polls_exceeds_poll_max(typical: float | None) -> None:
    # The safety net: a stored reply is seen at most poll_max later, however long the record.
    for polls in [*range(200), 10**4, 10**9]:  # and no overflow after a day of polling
        assert 0 <= schedule(polls, typical) <= DEFAULTS.poll_max


def test_a_call_polls_about_three_times_however_long_it_waits() -> None:
    # The fleet's calls wait ~7 ms with 8 callers on 2 workers and 65-240 ms with 200: the
    # fixed schedule spends a poll per doubling of that, the timed one a flat few, and sees the
    # reply no later.
    waits = [0.002, 0.0073, 0.065, 0.24]
    assert [simulate(w, None)[0] for w in waits] == [3, 8, 12, 14]
    assert [simulate(w, w)[0] for w in waits] == [3, 3, 3, 3]
    for w in waits:
        assert simulate(w, w)[1] <= simulate(w, None)[1] + 1e-12


def test_a_wait_past_poll_max_still_costs_fewer_polls() -> None:
    # The first poll and the steps are capped at poll_max: more polls than three, fewer than 17.
    assert simulate(0.7, 0.7)[0] == 7
    assert simulate(0.7, None)[0] == 17


@pytest.mark.parametrize("ratio", [LEAD, 0.9, 1.0, 1.2, 1.5])
def test_a_lone_caller_sees_its_reply_no_later_than_on_the_fixed_schedule(ratio: float) -> None:
    # An idle system's reply takes ~2 ms; one a little slower or faster than usual is not seen
    # later than the fixed schedule would see it.
    typical = 0.002
    stored = ratio * typical
    assert simulate(stored, typical)[1] <= simulate(stored, None)[1] + 1e-12


def test_the_record_learns_a_steady_wait_within_a_few_calls() -> None:
    times = ReplyTimes(DEFAULTS.poll_initial)
    polls = [call(times, 0.05)[0] for _ in range(12)]
    assert polls[0] == 12  # the first call has no record: the fixed schedule
    assert max(polls[1:]) <= 4
    typical = times.typical(KEY)
    assert typical is not None and 0.8 * 0.05 <= typical <= 1.05 * 0.05


def test_a_reply_faster_than_usual_brings_the_record_down_quickly() -> None:
    # A backlog drained: replies come in 2 ms again where they took 240 ms. The first poll
    # finds each at once and the record falls geometrically.
    times = ReplyTimes(DEFAULTS.poll_initial)
    times.record(KEY, 0.24)
    seen = [call(times, 0.002)[1] for _ in range(16)]
    assert seen[0] == pytest.approx(LEAD * 0.24)
    assert all(b < a for a, b in itertools.pairwise(seen[:12]))
    assert sum(seen) <= 0.6  # the latency the drain costs, once, over the calls after it
    assert max(seen[-4:]) <= 0.003


def test_a_reply_slower_than_usual_is_still_seen_within_poll_max() -> None:
    # The task got slow: 2 ms usual, now 1.5 s. The record is a hint, never a wait.
    polls, seen, last_empty = simulate(1.5, 0.002)
    assert seen - last_empty <= DEFAULTS.poll_max + 1e-12
    assert seen - 1.5 <= DEFAULTS.poll_max + 1e-12
    assert polls <= simulate(1.5, None)[0] + 3


def test_the_sample_is_the_middle_of_the_polls_that_bracket_the_reply() -> None:
    assert sample(0.0, 0.02) == pytest.approx(0.01)  # found by the first poll
    assert sample(0.06, 0.07) == pytest.approx(0.065)


def test_the_record_has_a_floor_and_a_bounded_number_of_keys() -> None:
    times = ReplyTimes(0.001)
    times.record(KEY, 0.0)
    assert times.typical(KEY) == 0.001  # never a busy loop of polls
    for i in range(KEYS):
        times.record(("q", f"task{i}"), 0.01)
    # KEY was the oldest: it made room; a key used since is kept.
    assert times.typical(KEY) is None
    times.record(("q", "task0"), 0.01)
    times.record(("q", "new"), 0.01)
    assert times.typical(("q", "task0")) is not None
    assert times.typical(("q", "task1")) is None
