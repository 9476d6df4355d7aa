"""Fire-and-forget delivery: at least once, exactly once without crashes, retries, dead letters."""

from __future__ import annotations

import itertools

import pytest

from pgqueue import Client, Message
from tests.support import runs
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.core_tasks"


@pytest.mark.timeout(600)
def test_four_workers_drain_20000_messages_exactly_once(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    n = 20_000
    with Client(pg_dsn) as client:
        for start in range(0, n, 5000):
            client.enqueue_many(
                Message("t.record", [f"m{i}"]) for i in range(start, min(n, start + 5000))
            )
    # Started together, not one after another: a first worker alone could drain much of the
    # backlog while the others import.
    for worker in [workers.start(pg_dsn, tasks=TASKS, concurrency=4, wait=False) for _ in range(4)]:
        worker.wait_ready()
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0,
        480,
        "the queue to drain",
        interval=0.5,
    )
    distinct, total = runs.query(
        pg_dsn, "SELECT count(DISTINCT key), count(*) FROM test_runs WHERE phase = 'end'"
    )[0]
    assert distinct == n, "every message ran at least once"
    assert total == n, "with no crash, none ran twice"
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
    pids = runs.scalar(pg_dsn, "SELECT count(DISTINCT pid) FROM test_runs")
    assert pids > 4, "the work was spread over the slots of several workers"


def test_failures_retry_with_backoff_then_dead_letter(pg_dsn: str, workers: WorkerFactory) -> None:
    runs.create_runs_table(pg_dsn)
    with Client(pg_dsn) as client:
        client.enqueue("t.fail_record", ["ff-1"])
    workers.start(
        pg_dsn,
        tasks=TASKS,
        concurrency=1,
        extra=["--max-attempts", "3", "--retry-backoff", "0.2", "--poll-interval", "0.05"],
    )
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1,
        30,
        "the failing message to be dead-lettered",
    )
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE key = 'ff-1'") == 3
    reason = runs.scalar(pg_dsn, "SELECT reason FROM pgqueue.dead_letter")
    assert reason == "failed after 3 attempts: RuntimeError: failing on purpose for ff-1"
    starts = [r[0] for r in runs.query(pg_dsn, "SELECT at FROM test_runs ORDER BY run_id")]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # Jitter draws each wait from the upper half of base * 2**(attempt-1): attempt 1 waits
    # 0.1-0.2 s, attempt 2 0.2-0.4 s. The floors prove the growth; comparing the two draws
    # (plus poll and scheduling delays) would fail now and then on its own.
    assert gaps[0] >= 0.1, gaps
    assert gaps[1] >= 0.2, "backoff grows between attempts"


def test_dead_letter_replay_runs_it_again(pg_dsn: str, workers: WorkerFactory) -> None:
    runs.create_runs_table(pg_dsn)
    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.dead_letter (msg_id, queue, task_name, payload, priority, tenant, "
        "enqueued_at, read_ct, reason) VALUES (1, 'default', 't.record', "
        """'{"args": ["replayed"], "kwargs": {}}', 5, '', now(), 5, 'by hand') RETURNING dl_id""",
    )
    from pgqueue import admin

    (letter,) = admin.dead_letters(pg_dsn)
    assert admin.replay_dead_letter(pg_dsn, letter.dl_id) is not None
    assert admin.dead_letters(pg_dsn) == []
    workers.start(pg_dsn, tasks=TASKS, concurrency=1)
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end'") == 1,
        20,
        "the replayed message to run",
    )


def test_tenant_fairness_small_tenant_is_not_starved(pg_dsn: str, workers: WorkerFactory) -> None:
    runs.create_runs_table(pg_dsn)
    with Client(pg_dsn) as client:
        client.enqueue_many(
            Message("t.record", [f"a{i}", 0.002], tenant="tenant-a") for i in range(5000)
        )
        client.enqueue_many(Message("t.record", [f"b{i}"], tenant="tenant-b") for i in range(10))
    workers.start(pg_dsn, tasks=TASKS, concurrency=2)
    wait_until(
        lambda: (
            runs.scalar(
                pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end' AND key LIKE 'b%%'"
            )
            == 10
        ),
        120,
        "tenant B's ten messages to finish",
    )
    a_done = runs.scalar(
        pg_dsn,
        "SELECT count(*) FROM test_runs WHERE phase='end' AND key LIKE 'a%%' AND run_id < "
        "(SELECT max(run_id) FROM test_runs WHERE key LIKE 'b%%')",
    )
    print(f"\nfairness: B finished after {a_done} of A's 5000")
    assert a_done < 2500, f"B finished after {a_done} of A's 5000 (must be before half)"


def test_priority_orders_claims_without_tenants(pg_dsn: str, workers: WorkerFactory) -> None:
    runs.create_runs_table(pg_dsn)
    with Client(pg_dsn) as client:
        client.enqueue_many(Message("t.record", [f"low{i}"], priority=1) for i in range(20))
        client.enqueue_many(Message("t.record", [f"high{i}"], priority=9) for i in range(20))
    workers.start(pg_dsn, tasks=TASKS, concurrency=1)
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end'") == 40,
        60,
        "all 40 to run",
    )
    order = [
        r[0]
        for r in runs.query(pg_dsn, "SELECT key FROM test_runs WHERE phase='start' ORDER BY run_id")
    ]
    assert all(k.startswith("high") for k in order[:20])
    assert order[20:] == [f"low{i}" for i in range(20)], "FIFO within a priority"
