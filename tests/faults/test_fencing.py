"""Fault matrix, a worker frozen past its lease (SIGSTOP, as a long GC pause or a stopped VM
would): another worker re-claims the message and answers the caller; the frozen worker's late
result is fenced by its claim token and never lands. One reply per call."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.callers import start_calls
from tests.support import marks, runs
from tests.support.workers import WorkerFactory, http_get, wait_until

TASKS = "tests.support.fault_tasks"


@pytest.mark.timeout(180)
def test_frozen_worker_past_its_lease_is_fenced(
    pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "marks"
    env = {"PGQUEUE_TEST_MARKS": str(log)}
    frozen = workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--lease", "3"], env=env)
    calls = start_calls(pg_dsn, ["frozen"], 2.0, timeout=90)
    wait_until(lambda: marks.starts(log)["frozen"] == 1, 30, "the task to start")
    os.kill(frozen.pid, signal.SIGSTOP)  # the supervisor; its slot finishes the run meanwhile
    frozen_at = time.monotonic()
    try:
        rescuer = workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--lease", "3"], env=env)
        calls.join()
        answered_in = calls.answered_at["frozen"] - frozen_at
        calls.check(["frozen"])
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    # The frozen worker wakes with a finished result under a claim that is no longer its own.
    wait_until(lambda: "lease lost" in frozen.log_path.read_text(), 30, "the late result fenced")
    _, text = http_get(frozen.url("/metrics"))
    assert 'outcome="lost"' in text or "lease lost at renewal" in frozen.log()
    # The lease ran out, so the task ran twice (the lease contract: at-least-once runs); the
    # settle happened once: the caller's one reply came from the rescuer, and nothing else
    # was written.
    assert marks.starts(log)["frozen"] == 2
    runs.wait_queue_empty(pg_dsn, 10, "the message settled")
    runs.wait_replies_taken(pg_dsn)
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
    assert frozen.proc.poll() is None and rescuer.proc.poll() is None
    print(f"FIGURE frozen worker: caller answered {answered_in:.1f}s after the freeze (lease 3 s)")
