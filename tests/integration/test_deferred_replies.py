"""Deferred replies (issue 18): submit returns at once with the reply key; the reply is collected
later, from the same process or another, with the same never-raising CallResult and bounded wait."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psycopg

from pgqueue import Client, Message, TaskOptions
from pgqueue.client import CALL_MARGIN
from tests.support.workers import REPO, WorkerFactory


def test_submit_returns_at_once_and_the_result_is_collected_later(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with Client(pg_dsn) as client:
        # No worker yet: submit does not wait for one.
        handles = [client.submit("demo.add", [i, 1]) for i in range(5)]
        assert len({h.reply_key for h in handles}) == 5
        workers.start(pg_dsn, concurrency=2)
        assert [h.result(60).value for h in handles] == [1, 2, 3, 4, 5]


def test_another_process_collects_the_result_by_its_reply_key(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with Client(pg_dsn) as client:
        submitted = client.submit("demo.echo", ["from afar"])
    workers.start(pg_dsn, concurrency=1)
    script = (
        "import sys; from pgqueue import Client\n"
        "with Client(sys.argv[1]) as c:\n"
        "    print(c.result(sys.argv[2], 60).to_json())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pg_dsn, submitted.reply_key],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["value"] == {"args": ["from afar"], "kwargs": {}}, result


def test_result_waits_no_longer_than_its_timeout_and_never_raises(pg_dsn: str) -> None:
    with Client(pg_dsn) as client:
        submitted = client.submit("demo.noop", queue="nobody-consumes")
        started = time.monotonic()
        result = submitted.result(0.5)
        assert result.kind == "timeout" and result.reply_key == submitted.reply_key
        assert time.monotonic() - started < 0.5 + CALL_MARGIN + 1.0  # + scheduling on a busy box
        bad = client.result("not a key!", 1)
        assert (bad.kind, bad.error.startswith("reply_key:")) == ("enqueue_error", True)
        assert client.result(submitted.reply_key, -1).kind == "enqueue_error"


def test_per_task_options_travel_in_the_payload_headers(pg_dsn: str) -> None:
    options = TaskOptions(time_limit=12.5, max_attempts=2, retry_backoff=0.5)
    with Client(pg_dsn) as client:
        msg_id = client.enqueue("demo.noop", options=options, unique_key="opt")
        client.submit("demo.noop", options=TaskOptions(max_attempts=1), deadline=30)
        client.enqueue_many([Message("demo.noop", options=TaskOptions(retry_backoff=2))])
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT msg_id, payload->'headers', deadline IS NOT NULL FROM pgqueue.message "
            "ORDER BY msg_id"
        ).fetchall()
    assert rows[0] == (msg_id, {"time_limit": 12.5, "max_attempts": 2, "retry_backoff": 0.5}, False)
    assert rows[1][1:] == ({"max_attempts": 1}, True)
    assert rows[2][1:] == ({"retry_backoff": 2.0}, False)
