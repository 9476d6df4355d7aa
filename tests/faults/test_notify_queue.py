"""Fault matrix, a full NOTIFY queue (a stalled listener): every NOTIFY in the cluster then fails
with 54000. The worker's ack and dead-letter statements send no NOTIFY while the queue is over
half full, and a NOTIFY that fails anyway (the queue filled in between) is written again without
it (the policy's unit tests cover that branch): polling is the correctness path, so callers are
answered, nothing re-runs, and nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import Client, ClientSettings
from tests.support import marks, runs
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory

TASKS = "tests.support.fault_tasks"


@pytest.fixture
def small_notify_queue(pg_server: PgServer) -> Iterator[None]:
    """The cluster's NOTIFY queue at its smallest (64 pages, 512 kB), so a test can fill it."""
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_notify_queue_pages = 64")
    pg_server.stop("fast")
    pg_server.start()
    try:
        yield
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_notify_queue_pages")
        pg_server.stop("fast")
        pg_server.start()


@pytest.mark.timeout(240)
def test_full_notify_queue_replies_are_written_without_notify(
    small_notify_queue: None, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "marks"
    # A listener that never reads (idle in a transaction) holds the queue's tail back.
    stalled = psycopg.connect(pg_dsn, autocommit=True)
    filler = psycopg.connect(pg_dsn, autocommit=True)
    try:
        stalled.execute("LISTEN pgqueue_filler")
        stalled.execute("BEGIN")
        stalled.execute("SELECT 1")
        for _ in range(500):
            try:
                filler.execute("SELECT pg_notify('pgqueue_filler', %s)", ("x" * 7900,))
            except psycopg.errors.ProgramLimitExceeded:
                break
        else:
            pytest.fail("the NOTIFY queue never filled")
        worker = workers.start(
            pg_dsn, tasks=TASKS, extra=["--lease", "3"], env={"PGQUEUE_TEST_MARKS": str(log)}
        )
        keys = [f"nq{i}" for i in range(5)]
        # The caller's enqueue NOTIFY would fail the same way: it enqueues without one.
        with Client(pg_dsn, ClientSettings(notify=False)) as client:
            began = time.monotonic()
            results = {k: client.call("f.mark", [k], timeout=60) for k in keys}
            took = time.monotonic() - began
        assert all(r.ok and r.value == k for k, r in results.items()), results
        assert max(marks.starts(log).values()) == 1, marks.starts(log)
        runs.wait_queue_empty(pg_dsn, 10, "every message settled")
        assert worker.proc.poll() is None
        print(f"FIGURE full NOTIFY queue: 5 sequential calls answered in {took:.2f}s")
    finally:
        stalled.close()
        filler.close()
