"""A job and its run, shared by both pools (child-process slots and the inline runner).

A job is what a pool needs to run one claimed message; its run ends in a report: the task's
:class:`~pgqueue.outcomes.RunResult`, or :class:`NotStarted` when the caller had given up before
the job's turn came (the supervisor then dead-letters the message with the one "deadline passed"
reason of :func:`pgqueue.outcomes.deadline_passed`).
"""

from __future__ import annotations

import functools
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgqueue import context, limits, outcomes
from pgqueue.tasks import lookup


@dataclass(frozen=True, slots=True)
class Job:
    """What a pool needs to run one message."""

    seq: int  # per slot, increasing in the order handed
    msg_id: int
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    want_reply: bool
    deadline: float | None  # monotonic; the job is not started after it
    expected: float  # the supervisor's estimate of its run time, seconds (0: unknown)
    # What pgqueue.current() tells the task (see pgqueue.context).
    queue: str = ""
    tenant: str = ""
    attempt: int = 1
    time_limit: float = 0.0  # this run's hard limit, seconds (0: not known here)


@dataclass(frozen=True, slots=True)
class NotStarted:
    """The job was not run: its caller's deadline had passed when its turn came."""

    late_by: float  # seconds past the deadline when the pool reached it


Report = outcomes.RunResult | NotStarted


def job_for(
    seq: int, msg: outcomes.Claimed, work: outcomes.Work, expected: float, ceiling: float
) -> Job:
    """The job that runs a claimed message; a call's deadline becomes a monotonic instant, its
    time limit the message's own at most ``ceiling`` (the pool's)."""
    deadline = (
        msg.claimed_at + msg.deadline_in
        if msg.reply_key is not None and msg.deadline_in is not None
        else None
    )
    return Job(
        seq,
        msg.msg_id,
        msg.task_name,
        work.args,
        work.kwargs,
        msg.reply_key is not None,
        deadline,
        expected,
        msg.queue,
        msg.tenant,
        msg.read_ct,
        limits.time_limit(msg.requested, ceiling),
    )


def too_late(job: Job, now: float) -> NotStarted | None:
    """The not-started report of a job whose caller has given up, else None."""
    if job.deadline is not None and now >= job.deadline:
        return NotStarted(now - job.deadline)
    return None


def task_context(job: Job) -> context.TaskContext:
    """What ``pgqueue.current()`` returns while the job runs (its deadline on the wall clock,
    as of the moment it is asked)."""
    deadline = (
        None
        if job.deadline is None
        else datetime.now(UTC) + timedelta(seconds=job.deadline - time.monotonic())
    )
    return context.TaskContext(
        msg_id=job.msg_id,
        attempt=job.attempt,
        tenant=job.tenant,
        queue=job.queue,
        task=job.task_name,
        deadline=deadline,
        time_limit=job.time_limit,
        has_reply_key=job.want_reply,
    )


def run_one(job: Job, wall: float) -> outcomes.RunResult:
    """Run the task; whatever it raises or returns becomes a report (never an exception)."""
    started = time.perf_counter()
    context.enter(functools.partial(task_context, job))
    try:
        value = lookup(job.task_name).func(*job.args, **job.kwargs)
    except BaseException as exc:
        error = outcomes.error_text(exc)
        if not isinstance(exc, Exception):
            traceback.print_exc()
        return outcomes.RunResult(False, None, error, time.perf_counter() - started, wall)
    finally:
        context.leave()
    text, why = outcomes.encode_result(value) if job.want_reply else (None, "")
    ok = text is not None or not job.want_reply
    return outcomes.RunResult(ok, text, why, time.perf_counter() - started, wall)
