"""Per-message limits (issue 18): a message's headers against the worker's ceiling, and what a
running task sees through ``pgqueue.current()``; without a database."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pgqueue
from pgqueue import claiming, jobs, limits, outcomes
from pgqueue.limits import Requested
from pgqueue.tasks import task

pytestmark = pytest.mark.unit

KNOWN = frozenset({"t.ok"})


def claimed(headers: Any = None, **over: Any) -> outcomes.Claimed:
    payload = {"args": [], "kwargs": {}, "headers": headers if headers is not None else {}}
    row: dict[str, Any] = {
        "msg_id": 7,
        "queue": "default",
        "task_name": "t.ok",
        "payload": payload,
        "reply_key": None,
        "priority": 5,
        "tenant": "",
        "read_ct": 1,
        "waited": 0.0,
        "deadline_in": None,
        "claim_token": 1,
        **over,
    }
    return claiming.claimed_from_row(row, time.monotonic())


def test_a_message_without_options_asks_for_nothing() -> None:
    for payload in ({"args": []}, {"headers": {}}, {"headers": None}, "not an object", []):
        assert limits.requested(payload) == (limits.DEFAULT, [])
    # Headers that are not options (a periodic tick's) are not problems either.
    assert limits.requested({"headers": {"periodic": "p", "tick": "t"}}) == (limits.DEFAULT, [])


def test_valid_options_are_read() -> None:
    asked, problems = limits.requested(
        {"headers": {"time_limit": 1, "max_attempts": 2, "retry_backoff": 0.25}}
    )
    assert problems == []
    assert asked == Requested(time_limit=1.0, max_attempts=2, retry_backoff=0.25)


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"time_limit": "10"}, "time_limit"),
        ({"time_limit": 0}, "time_limit"),
        ({"time_limit": -1.5}, "time_limit"),
        ({"time_limit": math.nan}, "time_limit"),
        ({"time_limit": math.inf}, "time_limit"),
        ({"time_limit": True}, "time_limit"),
        ({"time_limit": None}, "time_limit"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": False}, "max_attempts"),
        ({"retry_backoff": [1]}, "retry_backoff"),
        ({"retry_backoff": 0.0}, "retry_backoff"),
    ],
)
def test_a_malformed_option_is_ignored_and_named(headers: dict[str, Any], field: str) -> None:
    asked, problems = limits.requested({"headers": headers})
    assert asked == limits.DEFAULT  # the worker's setting applies
    assert len(problems) == 1 and problems[0].startswith(f"{field}: must be")


def test_only_the_malformed_option_is_ignored() -> None:
    asked, problems = limits.requested(
        {"headers": {"time_limit": "x" * 500, "max_attempts": 1, "retry_backoff": -1}}
    )
    assert asked == Requested(max_attempts=1)
    assert [p.partition(":")[0] for p in problems] == ["time_limit", "retry_backoff"]
    assert len(problems[0]) < 200  # a hostile value is not copied whole into the log


def test_headers_that_are_not_an_object_are_ignored() -> None:
    asked, problems = limits.requested({"headers": ["time_limit", 1]})
    assert asked == limits.DEFAULT
    assert problems == ["headers: must be an object, got ['time_limit', 1]"]


@pytest.mark.parametrize(
    ("asked", "ceiling", "effective"),
    [(None, 30.0, 30.0), (1.0, 30.0, 1.0), (60.0, 30.0, 30.0), (30.0, 30.0, 30.0)],
)
def test_the_time_limit_is_the_messages_at_most_the_workers(
    asked: float | None, ceiling: float, effective: float
) -> None:
    assert limits.time_limit(Requested(time_limit=asked), ceiling) == effective


@pytest.mark.parametrize(
    ("asked", "ceiling", "effective"), [(None, 3, 3), (1, 3, 1), (10, 3, 3), (10**30, 5, 5)]
)
def test_attempts_are_the_messages_at_most_the_workers(
    asked: int | None, ceiling: int, effective: int
) -> None:
    assert limits.max_attempts(Requested(max_attempts=asked), ceiling) == effective


def test_the_backoff_is_the_messages_own_base() -> None:
    assert limits.retry_backoff(limits.DEFAULT, 1.0) == 1.0
    assert limits.retry_backoff(Requested(retry_backoff=7.5), 1.0) == 7.5


def test_a_claim_carries_its_options_and_their_problems() -> None:
    msg = claimed({"time_limit": 2, "max_attempts": "many"})
    assert msg.requested == Requested(time_limit=2.0)
    assert msg.ignored == ("max_attempts: must be an integer ≥ 1, got 'many'",)
    # Ignored options never cost the message: it is admitted like any other.
    assert isinstance(outcomes.admit(msg, KNOWN, 3), outcomes.Work)


FAILED = outcomes.RunResult(False, None, "RuntimeError: no", 0.01)


def settle(msg: outcomes.Claimed, **worker: Any) -> outcomes.Action:
    settings = {
        "max_attempts": 3,
        "max_result_bytes": 100,
        "retry_backoff": 1.0,
        "retry_backoff_max": 8.0,
        **worker,
    }
    return outcomes.settle(msg, FAILED, **settings)


def test_max_attempts_one_dead_letters_after_the_first_failure() -> None:
    assert isinstance(settle(claimed()), outcomes.Retry)  # the worker's 3
    action = settle(claimed({"max_attempts": 1}))
    assert isinstance(action, outcomes.DeadLetter)
    assert action.reason == "failed after 1 attempts: RuntimeError: no"


def test_more_attempts_than_the_worker_allows_are_not_given() -> None:
    assert isinstance(settle(claimed({"max_attempts": 10}, read_ct=2)), outcomes.Retry)
    assert isinstance(settle(claimed({"max_attempts": 10}, read_ct=3)), outcomes.DeadLetter)


def test_a_message_asking_one_attempt_is_not_run_a_second_time() -> None:
    # Its first worker died mid-run: the re-claim is its second attempt.
    verdict = outcomes.admit(claimed({"max_attempts": 1}, read_ct=2), KNOWN, 5)
    assert isinstance(verdict, outcomes.DeadLetter)
    assert "claimed 2 times (max_attempts=1)" in verdict.reason
    assert isinstance(outcomes.admit(claimed(read_ct=2), KNOWN, 5), outcomes.Work)


def test_the_retry_delay_follows_the_messages_backoff_under_the_workers_cap() -> None:
    for _ in range(50):
        own = settle(claimed({"retry_backoff": 4}))
        assert isinstance(own, outcomes.Retry) and 2.0 <= own.delay <= 4.0
        capped = settle(claimed({"retry_backoff": 1000}))
        assert isinstance(capped, outcomes.Retry) and 4.0 <= capped.delay <= 8.0
        default = settle(claimed())
        assert isinstance(default, outcomes.Retry) and 0.5 <= default.delay <= 1.0


def test_a_job_carries_the_effective_time_limit() -> None:
    work = outcomes.Work([], {})
    assert jobs.job_for(1, claimed({"time_limit": 1}), work, 0.0, 30.0).time_limit == 1.0
    assert jobs.job_for(1, claimed({"time_limit": 90}), work, 0.0, 30.0).time_limit == 30.0
    assert jobs.job_for(1, claimed(), work, 0.0, 0.5).time_limit == 0.5  # inline's cap


seen: list[pgqueue.TaskContext] = []


@task(name="t.limits.whoami")
def whoami() -> None:
    seen.append(pgqueue.current())


def test_current_is_the_running_jobs_context_and_only_while_it_runs() -> None:
    with pytest.raises(pgqueue.NotInTask, match="only available while a task runs"):
        pgqueue.current()
    msg = claimed(
        {"time_limit": 3},
        task_name="t.limits.whoami",
        reply_key="k",
        deadline_in=60.0,
        read_ct=2,
        tenant="acme",
        queue="reports",
    )
    job = jobs.job_for(1, msg, outcomes.Work([], {}), 0.0, 30.0)
    before = datetime.now(UTC)
    report = jobs.run_one(job, 0.0)
    assert report.ok, report
    (ctx,) = seen
    assert (ctx.msg_id, ctx.attempt, ctx.tenant, ctx.queue, ctx.task) == (
        7,
        2,
        "acme",
        "reports",
        "t.limits.whoami",
    )
    assert ctx.has_reply_key and ctx.time_limit == 3.0
    assert ctx.deadline is not None and ctx.deadline.tzinfo is not None
    assert before + timedelta(seconds=50) < ctx.deadline < before + timedelta(seconds=61)
    with pytest.raises(pgqueue.NotInTask):
        pgqueue.current()
    with pytest.raises(AttributeError):
        ctx.attempt = 3  # type: ignore[misc]  # frozen
