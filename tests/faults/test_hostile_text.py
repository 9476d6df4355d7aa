"""Fault matrix, hostile texts: a NUL, a lone surrogate and 1 MB of text in a task's error and
in its result, each as a call and as fire-and-forget. The worker stays up (same process, same
slots' supervisor), a caller gets the task's error at once, and fire-and-forget reaches the
dead-letter table with the text readable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from pgqueue import Client
from tests.support import runs
from tests.support.workers import WorkerFactory, http_get, wait_until

TASKS = "tests.support.fault_tasks"

# What the stored text says for each hostile text (made storable, nothing lost but the cap).
READABLE = {
    "nul": "ValueError: before\\x00after",
    "surrogate": "ValueError: before\\udc80after",
    "huge": "ValueError: huge:xxxx",
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["nul", "surrogate", "huge"])
def test_hostile_text_in_error_and_result(
    kind: str, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    worker = workers.start(
        pg_dsn,
        tasks=TASKS,
        extra=["--lease", "3", "--max-attempts", "1"],
        env={"PGQUEUE_TEST_MARKS": str(tmp_path / "marks")},
    )
    with Client(pg_dsn) as client:
        # A call whose task raises the text: a failed reply naming it, at once.
        began = time.monotonic()
        raised = client.call("f.raise_text", [kind], timeout=60)
        answered_in = time.monotonic() - began
        assert not raised.ok and raised.kind == "task_error", raised
        assert raised.error.startswith(READABLE[kind]), raised.error[:200]
        assert answered_in < 20, f"the caller waited {answered_in:.1f}s (a lease would be 3 s)"
        if kind == "huge":
            assert "[truncated:" in raised.error[-80:]
            assert len(raised.error.encode()) <= 65_536

        # A call whose task returns the text: stored as it is when Postgres can hold it,
        # otherwise a failed reply that says why, never a dropped one.
        began = time.monotonic()
        returned = client.call("f.return_text", [kind], timeout=60)
        assert time.monotonic() - began < 20
        if kind == "huge":
            assert returned.ok and returned.value == "huge:" + "x" * 1_000_000
        else:
            assert not returned.ok and returned.kind == "task_error", returned
            assert returned.error.startswith("reply not stored: the database refused it"), returned

        # Fire-and-forget: the raise reaches the dead-letter table, readable; the return is
        # acked (nothing is stored for it).
        client.enqueue("f.raise_text", [kind])
        client.enqueue("f.return_text", [kind])
    runs.wait_queue_empty(pg_dsn, 60, "both fire-and-forget messages settled")
    rows = runs.query(pg_dsn, "SELECT task_name, reason FROM pgqueue.dead_letter")
    assert [r[0] for r in rows] == ["f.raise_text"], rows
    assert rows[0][1].startswith(f"failed after 1 attempts: {READABLE[kind]}"), rows[0][1][:200]

    # The worker lived through all of it and still serves.
    assert worker.proc.poll() is None, worker.log()
    assert http_get(worker.url("/healthz"))[0] == 200
    wait_until(lambda: http_get(worker.url("/readyz"))[0] == 200, 10, "/readyz")
    with Client(pg_dsn) as client:
        assert client.call("f.mark", ["after"], timeout=30).value == "after"
    # Zero lost (every message has an outcome above), zero doubled (one settle each).
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0
    print(f"FIGURE hostile {kind}: call error answered in {answered_in:.3f}s")


@pytest.mark.timeout(120)
def test_one_unstorable_reply_in_a_batch_settles_alone(
    pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Hand-inserted calls, waiting before the worker starts: once the inline pool has measured
    # the task short it claims, runs and acks them in batches (one ack statement for many).
    keys = [f"b{i}" for i in range(12)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for key in keys:
            task, arg = ("f.return_text", "nul") if key == "b6" else ("f.echo", key)
            conn.execute(
                "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key) "
                "VALUES ('default', %s, %s, %s)",
                (task, json.dumps({"args": [arg], "kwargs": {}}), key),
            )
    worker = workers.start(
        pg_dsn,
        tasks=TASKS,
        extra=["--pool", "inline", "--lease", "3"],
        env={"PGQUEUE_TEST_MARKS": str(tmp_path / "marks")},
    )
    runs.wait_queue_empty(pg_dsn, 30, "every call settled")
    replies = {
        r[0]: (r[1], r[2], r[3])
        for r in runs.query(
            pg_dsn, "SELECT reply_key, status::text, result, error FROM pgqueue.result"
        )
    }
    assert sorted(replies) == sorted(keys)
    for key in keys:
        status, result, error = replies[key]
        if key == "b6":
            assert status == "failed" and error.startswith("reply not stored: the database refused")
        else:
            assert (status, result) == ("completed", key), (key, replies[key])
    assert worker.proc.poll() is None
    batched = "writing them one by one" in worker.log_path.read_text()
    print(f"FIGURE batch with one unstorable reply: the refused batch was split: {batched}")
