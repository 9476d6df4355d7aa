"""The pure parts of pausing a queue: input checks naming the field, and what a person reads."""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue import ConfigurationError, QueuePause
from pgqueue.pausing import check_queue, check_reason, who

SINCE = dt.datetime(2026, 12, 2, 7, 40, 11, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "invalid queue name"), ("a b", "invalid queue name"), ("x" * 129, "invalid queue name"),
     (None, "must be a string"), (5, "must be a string")],
)  # fmt: skip
def test_a_bad_queue_is_named(value: object, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_queue(value)
    assert caught.value.field == "queue" and problem in caught.value.problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [("x" * 501, "at most 500 characters"), ("a\nb", "one line"), ("\x1b[31m", "one line"),
     (3, "must be a string")],
)  # fmt: skip
def test_a_bad_reason_is_named(value: object, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_reason(value)
    assert caught.value.field == "reason" and problem in caught.value.problem


def test_good_input_passes_unchanged() -> None:
    assert check_queue("orders.eu-1:high") == "orders.eu-1:high"
    assert check_reason("") == ""
    assert check_reason("migration 42\tstep 2 ✓") == "migration 42\tstep 2 ✓"
    assert who("cli").startswith("cli ") and " pid " in who()


def test_each_outcome_reads_as_what_happened() -> None:
    paused = QueuePause("orders", True, True, SINCE, "cli ann@laptop", "deploy 7")
    assert paused.describe() == "queue orders paused: workers claim nothing more from it (deploy 7)"
    again = QueuePause("orders", True, False, SINCE, "cli ann@laptop", "")
    assert again.describe() == (
        "queue orders was already paused since 2026-12-02 07:40:11 UTC by cli ann@laptop; "
        "nothing changed"
    )
    resumed = QueuePause("orders", False, True, SINCE, "cli ann@laptop", "deploy 7")
    assert resumed.describe() == (
        "queue orders resumed (paused since 2026-12-02 07:40:11 UTC by cli ann@laptop "
        "(deploy 7)): workers drain it again"
    )
    assert again.standing() == (
        "queue orders is paused since 2026-12-02 07:40:11 UTC by cli ann@laptop: "
        "no worker claims from it"
    )
    idle = QueuePause("orders", False, False)
    assert idle.standing() == "queue orders is not paused"
    assert idle.describe() == "queue orders was not paused; nothing changed"
    assert idle.as_dict() == {
        "queue": "orders", "paused": False, "changed": False, "paused_at": None,
        "paused_by": "", "reason": "",
    }  # fmt: skip
    assert paused.as_dict()["paused_at"] == "2026-12-02T07:40:11+00:00"
