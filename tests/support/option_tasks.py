"""Tasks with per-task options (issue 18), for the tests of what a worker does with them."""

from __future__ import annotations

import time
from typing import Any

import pgqueue


@pgqueue.task(name="opt.stubborn", time_limit=1)
def stubborn(seconds: float) -> float:
    """Sleeps past its own 1 s limit, swallowing what it can (a kill or the timer stops it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except Exception:  # the point: only a hard limit stops this task
            continue
    return seconds


@pgqueue.task(name="opt.fail_once", max_attempts=1)
def fail_once(key: str) -> None:
    raise RuntimeError(f"failing on purpose for {key}")


@pgqueue.task(name="opt.fail_default", retry_backoff=0.05)
def fail_default(key: str) -> None:
    raise RuntimeError(f"failing on purpose for {key}")


@pgqueue.task(name="opt.whoami", time_limit=7)
def whoami() -> dict[str, Any]:
    """What ``pgqueue.current()`` tells the task, as JSON."""
    ctx = pgqueue.current()
    return {
        "msg_id": ctx.msg_id,
        "attempt": ctx.attempt,
        "tenant": ctx.tenant,
        "queue": ctx.queue,
        "task": ctx.task,
        "deadline": ctx.deadline.isoformat() if ctx.deadline else None,
        "time_limit": ctx.time_limit,
        "has_reply_key": ctx.has_reply_key,
    }
