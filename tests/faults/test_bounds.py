"""Fault matrix, unbounded inputs: hand-inserted messages with a reply key too long to notify or
index, task names too long or with control characters, unknown names (one metric series), a
task's grandchild at the time limit, and a slot whose task module fails to import."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psycopg
import pytest

from pgqueue import Client
from tests.support import marks, runs
from tests.support.workers import WorkerFactory, http_get, wait_until

TASKS = "tests.support.fault_tasks"


def _insert(dsn: str, task: str, reply_key: str | None) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key) "
            "VALUES ('default', %s, %s, %s) RETURNING msg_id",
            (task, '{"args": ["k"], "kwargs": {}}', reply_key),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.timeout(120)
def test_oversize_reply_key_is_dead_lettered_on_first_claim(
    pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "marks"
    worker = workers.start(
        pg_dsn, tasks=TASKS, extra=["--lease", "3"], env={"PGQUEUE_TEST_MARKS": str(log)}
    )
    began = time.monotonic()
    # 9000 bytes: over NOTIFY's 8000 and the result index's ~2.7 kB; 5000: over the index only.
    for size in (9000, 5000):
        _insert(pg_dsn, "f.mark", "k" * size)
    runs.wait_queue_empty(pg_dsn, 30, "the oversize keys to be settled")
    settled_in = time.monotonic() - began
    rows = runs.query(pg_dsn, "SELECT read_ct, reason FROM pgqueue.dead_letter ORDER BY dl_id")
    assert [r[0] for r in rows] == [1, 1], rows  # settled on the first claim, never re-run
    for row in rows:
        assert re.match(r"invalid reply key: \d+ bytes, over the limit of 1024", row[1]), row
    assert marks.starts(log) == {}, "a message with an unusable reply key ran"
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.result") == 0
    assert worker.proc.poll() is None
    print(f"FIGURE oversize reply key: dead-lettered in {settled_in:.3f}s, 0 runs")


@pytest.mark.timeout(120)
def test_bad_task_names_are_dead_lettered_and_share_one_metric_label(
    pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    worker = workers.start(pg_dsn, tasks=TASKS, env={"PGQUEUE_TEST_MARKS": str(tmp_path / "m")})
    _insert(pg_dsn, "t" * 300, "key-long")
    _insert(pg_dsn, "bad\nname", "key-ctl")
    for i in range(5):
        _insert(pg_dsn, f"bogus.{i}", None)
    runs.wait_queue_empty(pg_dsn, 30, "the bad names to be dead-lettered")
    reasons = dict(runs.query(pg_dsn, "SELECT reply_key, reason FROM pgqueue.dead_letter"))
    assert "300 characters, over the limit of 255" in reasons["key-long"]
    assert "contains control characters" in reasons["key-ctl"]
    with Client(pg_dsn) as client:
        reply = client.wait_for_reply("key-ctl", 10)
    assert not reply.ok and "invalid task name" in reply.error
    _, text = http_get(worker.url("/metrics"))
    assert 'task="<unknown>"' in text
    assert "bogus." not in text and "tttt" not in text


@pytest.mark.timeout(120)
def test_time_limit_kills_the_tasks_grandchildren(
    pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "marks"
    workers.start(
        pg_dsn,
        tasks=TASKS,
        extra=["--lease", "3", "--task-time-limit", "2"],
        env={"PGQUEUE_TEST_MARKS": str(log)},
    )
    with Client(pg_dsn) as client:
        began = time.monotonic()
        result = client.call("f.spawn_and_hang", ["gc"], timeout=60)
        answered_in = time.monotonic() - began
    assert not result.ok and result.error.startswith("TimeLimitExceeded"), result
    (child,) = marks.children(log)

    def gone() -> bool:
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().split(") ")[1].startswith("Z")  # killed, not yet reaped
        except FileNotFoundError:
            return True

    wait_until(gone, 10, "the grandchild to be killed with its slot's process group")
    print(f"FIGURE grandchild: call answered in {answered_in:.3f}s (limit 2 s), grandchild dead")


@pytest.mark.timeout(120)
def test_slot_import_failure_backs_off(pg_dsn: str, workers: WorkerFactory) -> None:
    worker = workers.start(pg_dsn, tasks="tests.support.badslot_tasks", concurrency=1, wait=False)
    began = time.monotonic()
    line = re.compile(r"slot 0 could not import the task modules \(.*badslot_tasks refuses")

    def attempts() -> int:
        return len(line.findall(worker.log_path.read_text()))

    wait_until(lambda: attempts() >= 1, 60, "the import failure's log line")
    wait_until(lambda: attempts() >= 2, 30, "a respawn after the import failure")
    time.sleep(8)  # a window to count respawns in (the thing measured, not a synchronisation)
    count = attempts()
    window = time.monotonic() - began
    # 0.5 s doubling: respawns 0.5, 1.5, 3.5, 7.5, 15.5 s after the first; a tight loop would
    # log hundreds of lines in the same window.
    assert 2 <= count <= 6, (count, worker.log())
    assert worker.proc.poll() is None
    assert http_get(worker.url("/readyz"))[0] != 200
    assert os.path.exists(worker.log_path)
    print(f"FIGURE slot import failure: {count} attempts in {window:.1f}s")
