"""Per-task options honoured by real workers (issue 18): a handle's time_limit and max_attempts
apply below the worker's own, a malformed option costs one warning and nothing else, and a task
sees its own message through ``pgqueue.current()`` in both pools."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgqueue import Client
from tests.support import option_tasks, runs
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.option_tasks"
POOLS = {"process": [], "inline": ["--pool", "inline"]}


@pytest.mark.parametrize("pool", POOLS)
def test_a_handles_time_limit_stops_its_task_under_the_workers(
    pg_dsn: str, workers: WorkerFactory, pool: str
) -> None:
    workers.start(
        pg_dsn, tasks=TASKS, concurrency=1, extra=["--task-time-limit", "30", *POOLS[pool]]
    )
    with Client(pg_dsn) as client:
        began = time.monotonic()
        result = option_tasks.stubborn.using(client, timeout=60).call(20)
        took = time.monotonic() - began
        assert result.kind == "task_error", result
        stopped = "killed after 1s" if pool == "process" else "interrupted after 1s"
        assert result.error == f"TimeLimitExceeded: {stopped}"
        # 1 s, not the worker's 30 s (nor the inline cap): the generous bound is for a busy box.
        assert 1.0 <= took < 15.0, took
        after = option_tasks.whoami.using(client, timeout=60).call()
        assert after.ok, after  # the worker (and, in a process pool, a fresh slot) goes on


def test_max_attempts_one_dead_letters_after_one_run_where_the_worker_allows_three(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    worker = workers.start(
        pg_dsn, tasks=TASKS, concurrency=2, extra=["--max-attempts", "3", "--retry-backoff", "0.05"]
    )
    with Client(pg_dsn) as client:
        once = option_tasks.fail_once.using(client).delay("once")
        # The same failure without max_attempts: the worker's 3 attempts, the handle's backoff.
        thrice = option_tasks.fail_default.using(client).delay("thrice")
    runs.wait_queue_empty(pg_dsn, 60, "both messages to be dead-lettered")
    rows = dict(
        (msg_id, (read_ct, reason))
        for msg_id, read_ct, reason in runs.query(
            pg_dsn, "SELECT msg_id, read_ct, reason FROM pgqueue.dead_letter"
        )
    )
    assert rows == {
        once: (1, "failed after 1 attempts: RuntimeError: failing on purpose for once"),
        thrice: (3, "failed after 3 attempts: RuntimeError: failing on purpose for thrice"),
    }
    assert worker.log_path.read_text().count(f"task failed: msg_id={once} ") == 1


@pytest.mark.parametrize("pool", POOLS)
def test_a_task_sees_its_own_message_through_current(
    pg_dsn: str, workers: WorkerFactory, pool: str
) -> None:
    workers.start(
        pg_dsn, tasks=TASKS, concurrency=1, extra=["--task-time-limit", "30", *POOLS[pool]]
    )
    with Client(pg_dsn) as client:
        before = datetime.now(UTC)
        submitted = option_tasks.whoami.using(client, tenant="acme", deadline=120).submit()
        result = submitted.result(60)
    assert result.ok, result
    seen = result.value
    deadline = datetime.fromisoformat(seen.pop("deadline"))
    assert seen == {
        "msg_id": submitted.msg_id,
        "attempt": 1,
        "tenant": "acme",
        "queue": "default",
        "task": "opt.whoami",
        "time_limit": 7.0,  # the handle's, under the worker's 30 s (and inline's 5 s cap: 5)
        "has_reply_key": True,
    } | ({"time_limit": 5.0} if pool == "inline" else {})
    assert before + timedelta(seconds=100) < deadline < before + timedelta(seconds=125)


def test_a_malformed_option_is_ignored_with_one_warning(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    worker = workers.start(pg_dsn, tasks=TASKS, concurrency=1)
    headers = {"time_limit": "soon", "max_attempts": 0, "retry_backoff": 0.5}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO pgqueue.message (queue, task_name, payload) "
            "VALUES ('default', 'opt.whoami', %s) RETURNING msg_id",
            (json.dumps({"args": [], "kwargs": {}, "headers": headers, "tenant": ""}),),
        ).fetchone()
    assert row is not None
    msg_id = row[0]
    runs.wait_queue_empty(pg_dsn, 60, "the message to run and be acked")
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
    warning = f"msg_id={msg_id} task=opt.whoami: per-task options ignored"
    wait_until(lambda: warning in worker.log(), 10, "the warning in the worker's log")
    (line,) = [ln for ln in worker.log_path.read_text().splitlines() if warning in ln]
    assert "time_limit: must be a finite number of seconds > 0, got 'soon'" in line
    assert "max_attempts: must be an integer ≥ 1, got 0" in line
    assert "retry_backoff" not in line  # a valid option is not a problem
