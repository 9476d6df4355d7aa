"""The decision table of architecture §3.4–3.9, without a database."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue import outcomes
from pgqueue.replies import ReplyStatus

KNOWN = frozenset({"t.ok"})


def claimed(**over: Any) -> outcomes.Claimed:
    base: dict[str, Any] = {
        "msg_id": 1,
        "queue": "default",
        "task_name": "t.ok",
        "payload": {"args": [1], "kwargs": {"a": 2}},
        "reply_key": None,
        "priority": 5,
        "tenant": "",
        "read_ct": 1,
        "waited": 0.0,
        "deadline_in": None,
    }
    return outcomes.Claimed(**{**base, **over})


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"payload": "text"}, "malformed payload: expected a JSON object, got str"),
        ({"payload": {"args": {}}}, "malformed payload"),
        ({"payload": {"kwargs": []}}, "malformed payload"),
        ({"task_name": "t.nope"}, "unknown task 't.nope'"),
        ({"read_ct": 4}, "max attempts exceeded: claimed 4 times (max_attempts=3)"),
        ({"reply_key": "k", "deadline_in": -0.5}, "deadline passed"),
    ],
)
def test_drop_branches(over: dict[str, Any], reason: str) -> None:
    verdict = outcomes.admit(claimed(**over), KNOWN, max_attempts=3)
    assert isinstance(verdict, outcomes.DeadLetter)
    assert reason in verdict.reason


def test_admitted_work_carries_args() -> None:
    assert outcomes.admit(claimed(), KNOWN, 3) == outcomes.Work([1], {"a": 2})
    # A fire-and-forget message has no caller whose deadline could pass.
    assert isinstance(outcomes.admit(claimed(deadline_in=-1.0), KNOWN, 3), outcomes.Work)


def settle(msg: outcomes.Claimed, run: outcomes.RunResult) -> outcomes.Action:
    return outcomes.settle(
        msg, run, max_attempts=3, max_result_bytes=20, retry_backoff=1.0, retry_backoff_max=8.0
    )


OK = outcomes.RunResult(True, '"fine"', "", 0.01)
NONE = outcomes.RunResult(True, None, "", 0.01)
BAD = outcomes.RunResult(False, None, "ValueError: x", 0.01)


def test_request_reply_success_stores_completed_reply() -> None:
    assert settle(claimed(reply_key="k"), OK) == outcomes.Ack(
        ReplyStatus.COMPLETED, '"fine"', "", "completed"
    )


def test_none_is_a_completed_null_reply() -> None:
    assert settle(claimed(reply_key="k"), NONE) == outcomes.Ack(
        ReplyStatus.COMPLETED, "null", "", "completed"
    )


def test_oversized_reply_fails_fast() -> None:
    big = outcomes.RunResult(True, '"' + "x" * 30 + '"', "", 0.01)
    action = settle(claimed(reply_key="k"), big)
    assert isinstance(action, outcomes.Ack)
    assert action.status is ReplyStatus.FAILED
    assert "over the limit of 20" in action.error


def test_request_reply_failure_is_one_attempt() -> None:
    action = settle(claimed(reply_key="k", read_ct=1), BAD)
    assert action == outcomes.Ack(ReplyStatus.FAILED, None, "ValueError: x", "failed")


def test_fire_and_forget_retries_then_dead_letters() -> None:
    first = settle(claimed(read_ct=1), BAD)
    assert isinstance(first, outcomes.Retry)
    assert 0.5 <= first.delay <= 1.0
    second = settle(claimed(read_ct=2), BAD)
    assert isinstance(second, outcomes.Retry)
    assert 1.0 <= second.delay <= 2.0
    last = settle(claimed(read_ct=3), BAD)
    assert last == outcomes.DeadLetter("failed after 3 attempts: ValueError: x")


def test_backoff_is_capped() -> None:
    assert all(4.0 <= outcomes.backoff(20, 1.0, 8.0) <= 8.0 for _ in range(50))


def test_encode_result() -> None:
    assert outcomes.encode_result({"a": [1]}) == ('{"a": [1]}', "")
    text, why = outcomes.encode_result({1, 2})
    assert text is None and "not JSON-serialisable" in why
    assert outcomes.encode_result(float("nan"))[0] is None
