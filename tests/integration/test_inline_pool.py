"""``--pool inline``: tasks run in the worker process itself, under a timer instead of a kill."""

from __future__ import annotations

import psycopg
import pytest

from pgqueue import Client, Message
from tests.support import runs
from tests.support.workers import WorkerFactory

TASKS = "tests.support.core_tasks,pgqueue.demo_tasks"


def test_an_inline_worker_runs_calls_and_jobs_in_its_own_process(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    worker = workers.start(pg_dsn, tasks=TASKS, extra=["--pool", "inline"])
    with Client(pg_dsn) as client:
        ran_in = client.call("t.pid", timeout=20)
        assert ran_in.ok, ran_in
        assert ran_in.value == worker.pid  # no child process: the supervisor ran it
        failed = client.call("demo.fail", ["inline"], timeout=20)
        assert (failed.kind, failed.error) == ("task_error", "ValueError: inline")
        client.enqueue_many(Message("t.record", [f"ff-{i}"]) for i in range(200))
        runs.wait_queue_empty(pg_dsn, 30, "the fire-and-forget batch to be run and acked")
    assert runs.scalar(pg_dsn, "SELECT count(DISTINCT key) FROM test_runs") == 200
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0


@pytest.mark.parametrize(
    "bound", [["--lease", "1.5"], ["--heartbeat-staleness", "1"]], ids=["lease", "heartbeat"]
)
def test_an_inline_task_past_its_limit_is_interrupted_and_the_worker_goes_on(
    pg_dsn: str, workers: WorkerFactory, bound: list[str]
) -> None:
    # The limit is min(task_time_limit, lease/3, heartbeat_staleness/2): neither leases nor the
    # heartbeat are stamped while a task runs inline (a lapsed lease would run it twice, a stale
    # heartbeat would get the pod restarted).
    worker = workers.start(
        pg_dsn, tasks=TASKS, extra=["--pool", "inline", "--task-time-limit", "60", *bound]
    )
    with Client(pg_dsn) as client:
        result = client.call("t.stubborn_sleep", [30], timeout=20)
        assert result.kind == "task_error", result
        # Raised as a BaseException: the task's `except Exception` did not swallow it.
        assert result.error == "TimeLimitExceeded: interrupted after 0.5s"
        after = client.call("demo.echo", ["still serving"], timeout=20)
        assert after.ok and after.value == {"args": ["still serving"], "kwargs": {}}, after
    assert "time_limit=0.5s" in worker.log()
    assert "lease lost" not in worker.log()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pgqueue.message").fetchone()
    assert left == (0,)  # failed once and acked (§3.6), not back on the queue
