"""Request-reply semantics on a real Postgres and real worker processes (architecture §3.4–3.9)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pgqueue import Client
from tests.support import runs
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.core_tasks"


@pytest.fixture
def client(pg_dsn: str) -> Iterator[Client]:
    runs.create_runs_table(pg_dsn)
    with Client(pg_dsn) as c:
        yield c


def test_none_return_is_ok_with_null_value(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, tasks=TASKS, concurrency=1)
    result = client.call("t.return_none", timeout=20)
    assert result.ok
    assert result.kind == "ok"
    assert result.value is None


def test_raising_task_fails_after_exactly_one_attempt(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--max-attempts", "5"])
    result = client.call("t.fail_record", ["rr-1"], timeout=20)
    assert not result.ok
    assert result.kind == "task_error"
    assert result.error == "RuntimeError: failing on purpose for rr-1"
    # One attempt: no retry is scheduled and nothing is dead-lettered.
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE key = 'rr-1'") == 1
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0


def test_values_round_trip_and_reply_is_taken_once(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    payload = {"nested": [1, 2.5, "ü", None, True]}
    result = client.call("demo.echo", [payload], {"k": "v"}, timeout=20)
    assert result.ok, result
    assert result.value == {"args": [payload], "kwargs": {"k": "v"}}
    # The caller took its reply: nothing lingers in the result table (a reply that came in its
    # NOTIFY is deleted by the client's listener in the background).
    runs.wait_replies_taken(pg_dsn)


def test_unserialisable_result_fails_fast_without_rerun(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    result = client.call("demo.unserialisable", timeout=20)
    assert result.kind == "task_error"
    assert "not JSON-serialisable" in result.error
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0


def test_oversized_result_is_a_failed_reply(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1, extra=["--max-result-bytes", "100"])
    result = client.call("demo.echo", ["x" * 500], timeout=20)
    assert result.kind == "task_error"
    assert "over the limit of 100" in result.error


def test_time_limit_kills_the_task_and_the_slot_serves_the_next(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--task-time-limit", "1"])
    slow = client.call("t.sleep", [60], timeout=30)
    assert slow.kind == "task_error"
    assert slow.error.startswith("TimeLimitExceeded")
    nxt = client.call("t.pid", timeout=30)
    assert nxt.ok and isinstance(nxt.value, int)


def test_timeout_is_reported_and_a_late_start_is_dead_lettered(
    client: Client, pg_dsn: str, workers: WorkerFactory
) -> None:
    # No worker yet: the caller gives up; its message must not run once a worker appears.
    result = client.call("t.record", ["late"], timeout=0.3)
    assert result.kind == "timeout"
    assert "no reply within 0.3s" in result.error
    workers.start(pg_dsn, tasks=TASKS, concurrency=1)
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1,
        20,
        "the expired call to be dead-lettered",
    )
    reason = runs.scalar(pg_dsn, "SELECT reason FROM pgqueue.dead_letter")
    assert reason.startswith("deadline passed")
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs") == 0


def _insert_raw(dsn: str, task: str, payload: str, reply_key: str, deadline: str | None) -> None:
    runs.query(
        dsn,
        "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, deadline) "
        "VALUES ('default', %s, %s::jsonb, %s, now() + %s::interval) RETURNING msg_id",
        (task, payload, reply_key, deadline or "1 hour"),
    )


@pytest.mark.parametrize(
    ("task", "payload", "deadline", "reason"),
    [
        ("demo.echo", json.dumps("not an object"), None, "malformed payload"),
        ("demo.echo", json.dumps({"args": {"no": "list"}}), None, "malformed payload"),
        (
            "no.such.task",
            json.dumps({"args": [], "kwargs": {}}),
            None,
            "unknown task 'no.such.task'",
        ),
        ("demo.echo", json.dumps({"args": [], "kwargs": {}}), "-5 seconds", "deadline passed"),
    ],
)
def test_drop_branches_dead_letter_and_fail_the_caller_fast(
    pg_dsn: str, workers: WorkerFactory, task: str, payload: str, deadline: str | None, reason: str
) -> None:
    _insert_raw(pg_dsn, task, payload, "hand-made-key", deadline)
    workers.start(pg_dsn, concurrency=1)
    with Client(pg_dsn) as c:
        # A caller waiting on this reply key gets the failed reply without waiting for a timeout.
        result = c.wait_for_reply("hand-made-key", timeout=20)
    assert result.kind == "task_error"
    assert reason in result.error
    letters = runs.query(pg_dsn, "SELECT task_name, reason, reply_key FROM pgqueue.dead_letter")
    assert len(letters) == 1
    assert reason in letters[0][1]
    assert letters[0][2] == "hand-made-key"
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0


def test_a_call_right_after_a_fork_is_answered_on_the_childs_own_listener(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    """A client that called before a fork (its listener running) makes its first call in the
    child on a listener of the child's, not on the parent's (whose thread the child has not:
    the reply would wait for a safety-net poll, and the child would be left without one)."""
    import os

    workers.start(pg_dsn, concurrency=1)
    with Client(pg_dsn) as c:
        assert c.call("demo.add", [1, 2], timeout=30).value == 3
        parent = c.listener
        assert parent is not None
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                result = c.call("demo.add", [2, 3], timeout=30)
                child = c.listener
                code = 0 if result.value == 5 and child is not None and child is not parent else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert c.call("demo.add", [3, 4], timeout=30).value == 7


def test_a_client_created_before_a_fork_works_in_both_processes(pg_dsn: str) -> None:
    import os

    with Client(pg_dsn) as c:
        first = c.enqueue("demo.noop")
        pid = os.fork()
        if pid == 0:  # the child: its own pool, not the parent's sockets
            code = 1
            try:
                c.enqueue("demo.noop")
                code = 0 if c.pid == os.getpid() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert c.enqueue("demo.noop") > first
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 3


def test_an_idle_clients_listener_does_not_spin(pg_dsn: str, workers: WorkerFactory) -> None:
    """A client whose listener runs and that makes no call costs next to no CPU. Its wait is
    its own poll(2) on the socket: psycopg's timed wait (``notifies(timeout=...)``) spins
    through its last millisecond each time it expires, ~4 ms of CPU a second in rounds of
    0.2 s (0.8 of a core for 200 idle web processes; 0.3 ms a second now)."""
    import time

    workers.start(pg_dsn, concurrency=1)
    with Client(pg_dsn) as c:
        assert c.call("demo.add", [1, 2], timeout=30).value == 3
        assert c.listener is not None
        wait_until(lambda: c.listener is not None and c.listener.live, 10, "listener live")
        # The listener thread's own CPU clock: the test process runs other threads.
        ident = c.listener.ident
        assert ident is not None
        clock = time.pthread_getcpuclockid(ident)
        cpu = time.clock_gettime(clock)
        time.sleep(3.0)
        idle = time.clock_gettime(clock) - cpu
        assert idle < 0.005, f"{idle * 1000:.1f} ms of CPU in 3 s of an idle client's listener"
        # And it still hears its replies at once after the quiet spell.
        delivered = c.listener.delivered
        assert c.call("demo.add", [2, 3], timeout=30).value == 5
        assert c.listener.delivered > delivered
