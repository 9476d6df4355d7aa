"""Short tasks handed to slots several at a time: what happens to the jobs queued in a slot
when the task ahead of them runs long, is killed, or the worker is told to stop."""

from __future__ import annotations

import threading

import pytest

from pgqueue import Client, Message
from tests.support import runs
from tests.support.workers import WorkerFactory, WorkerProcess, wait_until

TASKS = "tests.support.core_tasks"


def _ended(dsn: str, key: str) -> int:
    return int(
        runs.scalar(dsn, "SELECT count(*) FROM test_runs WHERE key=%s AND phase='end'", (key,))
    )


def _started(dsn: str, key: str) -> int:
    return int(
        runs.scalar(dsn, "SELECT count(*) FROM test_runs WHERE key=%s AND phase='start'", (key,))
    )


def _warm(dsn: str, client: Client, count: int = 10) -> None:
    """Run t.record a few times so the worker has measured it short (it then batches it)."""
    client.enqueue_many(Message("t.record", [f"warm-{i}"]) for i in range(count))
    wait_until(lambda: all(_ended(dsn, f"warm-{i}") for i in range(count)), 30, "the warm-up runs")


def _enqueue_behind(client: Client, key: str, seconds: float, queued: list[str]) -> None:
    """One slow t.record, then quick ones, committed together so one claim takes them all."""
    client.enqueue_many(
        [Message("t.record", [key, seconds])] + [Message("t.record", [k]) for k in queued]
    )


def _worker(pg_dsn: str, workers: WorkerFactory, concurrency: int, *extra: str) -> WorkerProcess:
    runs.create_runs_table(pg_dsn)
    # A window well above t.record's run time on any machine: batching is certain, and a task
    # still running after 5 windows (1 s) counts as long.
    window = ["--slot-backlog-seconds", "0.2"]
    return workers.start(pg_dsn, tasks=TASKS, concurrency=concurrency, extra=window + list(extra))


def test_jobs_queued_behind_a_task_that_runs_long_move_to_a_free_slot(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    _worker(pg_dsn, workers, 2)
    with Client(pg_dsn) as client:
        _warm(pg_dsn, client)
        queued = [f"q{i}" for i in range(6)]
        _enqueue_behind(client, "slow", 4.0, queued)
        wait_until(lambda: _ended(pg_dsn, "slow") == 1, 30, "the slow task to finish")
    # Every job that had been queued behind the slow one ran once, and before it ended.
    rows = runs.query(
        pg_dsn,
        "SELECT key, count(*), max(at) < (SELECT at FROM test_runs WHERE key='slow' "
        "AND phase='end') FROM test_runs WHERE phase='end' AND key LIKE 'q%%' GROUP BY key",
    )
    assert sorted(rows) == [(k, 1, True) for k in queued]


@pytest.mark.timeout(120)
def test_a_short_task_killed_at_the_time_limit_leaves_the_jobs_behind_it_to_run(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # One slot: nowhere to move the queued jobs, so they wait for the kill.
    _worker(pg_dsn, workers, 1, "--task-time-limit", "1", "--max-attempts", "1")
    with Client(pg_dsn) as client:
        _warm(pg_dsn, client)
        queued = [f"q{i}" for i in range(4)]
        _enqueue_behind(client, "stuck", 30.0, queued)
        wait_until(lambda: all(_ended(pg_dsn, k) for k in queued), 30, "the jobs queued behind it")
    assert [_started(pg_dsn, k) for k in queued] == [1] * len(queued)
    assert _started(pg_dsn, "stuck") == 1
    assert _ended(pg_dsn, "stuck") == 0
    reason = runs.scalar(pg_dsn, "SELECT reason FROM pgqueue.dead_letter")
    assert reason == "failed after 1 attempts: TimeLimitExceeded: killed after 1s"
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0


def test_a_call_whose_caller_gave_up_while_queued_is_dead_lettered_unstarted(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    _worker(pg_dsn, workers, 1)
    with Client(pg_dsn) as client:
        _warm(pg_dsn, client)
        client.enqueue("t.record", ["slow", 2.0])
        wait_until(lambda: _started(pg_dsn, "slow") == 1, 30, "the slow task to start")
        # Measured short, the call queues in the one slot behind the slow task...
        result = client.call("t.record", ["late"], timeout=0.5)
        assert result.kind == "timeout"
        wait_until(
            lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1,
            30,
            "the late call to be dead-lettered",
        )
    # ...and is never started: its caller had stopped waiting when its turn came.
    assert _started(pg_dsn, "late") == 0
    reason = runs.scalar(pg_dsn, "SELECT reason FROM pgqueue.dead_letter")
    assert reason.startswith("deadline passed: the caller stopped waiting")
    status, error = runs.query(pg_dsn, "SELECT status::text, error FROM pgqueue.result")[0]
    assert status == "failed"
    assert error.startswith("deadline passed")


@pytest.mark.timeout(120)
def test_sigterm_hands_back_the_jobs_queued_in_a_slot_at_once(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    worker = _worker(pg_dsn, workers, 1, "--shutdown-grace", "30")
    queued = [f"q{i}" for i in range(4)]
    with Client(pg_dsn) as client:
        _warm(pg_dsn, client)
        _enqueue_behind(client, "slow", 3.0, queued)
    wait_until(lambda: _started(pg_dsn, "slow") == 1, 30, "the slow task to start")
    claimed = "SELECT count(*) FROM pgqueue.message WHERE claimed_by IS NOT NULL"
    assert runs.scalar(pg_dsn, claimed) >= 2, "jobs queued in the slot behind the slow one"
    exit_code: list[int] = []
    stopper = threading.Thread(target=lambda: exit_code.append(worker.terminate(timeout=60)))
    stopper.start()
    try:
        # Handed back while the slow task still runs: claimable by other workers at once.
        wait_until(lambda: runs.scalar(pg_dsn, claimed) == 1, 10, "the queued jobs to be released")
        assert _ended(pg_dsn, "slow") == 0
    finally:
        stopper.join()
    assert exit_code == [0]
    assert _ended(pg_dsn, "slow") == 1, "the running task was allowed to finish"
    left = runs.query(pg_dsn, "SELECT read_ct, vt <= now() FROM pgqueue.message")
    assert left == [(0, True)] * len(queued), "released without counting an attempt"
    assert all(_started(pg_dsn, k) == 0 for k in queued)
