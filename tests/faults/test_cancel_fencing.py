"""Fault matrix, a cancel its worker cannot hear in time: the supervisor is frozen (SIGSTOP) while
its slot finishes the cancelled run. When it wakes, the finished result must not land: the cancel
deleted the row, so the ack is dropped or fenced out, the caller's reply stays ``cancelled``, and
the message is never run again."""

from __future__ import annotations

import os
import signal

import psycopg
import pytest

from pgqueue import Client
from tests.support import cancel_tasks, runs
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.cancel_tasks"


def count(dsn: str, tag: str, event: str) -> int:
    query = "SELECT count(*) FROM cancel_probe WHERE tag = %s AND event = %s"
    return int(runs.scalar(dsn, query, (tag, event)))


@pytest.mark.timeout(180)
def test_a_result_finished_after_its_cancel_never_lands(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(cancel_tasks.DDL)
    # A long lease: nothing but the cancel takes the message from this worker.
    worker = workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--lease", "60"])
    with Client(pg_dsn) as client:
        submitted = client.submit("cancel.work", [pg_dsn, "frozen", 1.0])
        wait_until(lambda: count(pg_dsn, "frozen", "started") == 1, 60, "the run to start")
        os.kill(worker.pid, signal.SIGSTOP)  # the supervisor; its slot finishes the run
        try:
            done = submitted.cancel()
            assert (done.outcome, done.state) == ("cancelled", "running"), done
            wait_until(lambda: count(pg_dsn, "frozen", "finished") == 1, 30, "the run's end")
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        # The next call proves the worker went through its loop (and its pending writes) after
        # the freeze.
        assert client.call("cancel.echo", ["after"], timeout=60).value == "after"
        result = submitted.result(timeout=10)
        assert result.kind == "cancelled", result
    assert count(pg_dsn, "frozen", "started") == 1  # never run again
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0
    statuses = runs.query(pg_dsn, "SELECT status::text FROM pgqueue.result")
    assert ("completed",) not in statuses, statuses
    log = worker.log()
    assert (
        f"msg_id={done.msg_id} task=cancel.work cancelled after it ran" in log
        or f"lease lost: msg_id={done.msg_id}" in log
    ), log
