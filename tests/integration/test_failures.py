"""Crashes, shutdowns and outages: nothing is lost (architecture §3.2, §3.11; issue 2: 3, 8, 10)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pgqueue import CallResult, Client, ClientSettings, Message, PgQueueError
from tests.support import runs
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, http_get, wait_until

TASKS = "tests.support.core_tasks"


def _call_in_threads(
    dsn: str, n: int, seconds: float, timeout: float
) -> tuple[list[threading.Thread], dict[int, CallResult]]:
    results: dict[int, CallResult] = {}
    client = Client(dsn, ClientSettings(pool_size=8))

    def one(i: int) -> None:
        results[i] = client.call("t.record", [f"rr{i}", seconds], timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


@pytest.mark.timeout(180)
def test_sigkill_mid_call_every_caller_gets_one_reply_within_a_lease(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    lease = 3.0
    doomed = workers.start(
        pg_dsn,
        tasks=TASKS,
        concurrency=10,
        extra=["--lease", str(lease), "--task-time-limit", "60"],
    )
    threads, results = _call_in_threads(pg_dsn, 50, 1.0, timeout=90)
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='start'") >= 10,
        30,
        "the first worker to be running tasks",
    )
    doomed.kill()
    killed_at = time.monotonic()
    workers.start(pg_dsn, tasks=TASKS, concurrency=10, extra=["--lease", str(lease)])
    for t in threads:
        t.join(90)
    assert len(results) == 50
    assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok]
    assert sorted(r.value for r in results.values()) == sorted(f"rr{i}" for i in range(50))
    assert len({r.reply_key for r in results.values()}) == 50
    # Redelivery came after one lease, not after the task time limit (60 s): 50 tasks of 1 s on
    # 10 slots take 5 s once redelivered.
    assert time.monotonic() - killed_at < lease + 5 + 10
    # One reply row per key was written and taken; nothing left behind.
    runs.wait_replies_taken(pg_dsn)
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0


@pytest.mark.timeout(180)
def test_sigterm_drains_running_tasks_and_hands_back_the_rest(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    with Client(pg_dsn) as client:
        client.enqueue_many(Message("t.record", [f"s{i}", 0.3]) for i in range(200))
    worker = workers.start(pg_dsn, tasks=TASKS, concurrency=4, extra=["--shutdown-grace", "30"])
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end'") >= 8,
        30,
        "some tasks to finish",
    )
    assert worker.terminate(timeout=30) == 0
    started = runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='start'")
    ended = runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end'")
    assert started == ended, "every task that started was allowed to finish"
    # Nothing stays invisible behind a lease of a worker that is gone.
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message WHERE vt > now()") == 0
    assert "received SIGTERM" in worker.log()
    workers.start(pg_dsn, tasks=TASKS, concurrency=4)
    runs.wait_queue_empty(pg_dsn, 120, "a second worker to drain the rest")
    assert runs.scalar(pg_dsn, "SELECT count(DISTINCT key) FROM test_runs WHERE phase='end'") == 200
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='end'") == 200


@pytest.mark.timeout(240)
def test_postgres_restart_under_load_loses_nothing(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    worker = workers.start(pg_dsn, tasks=TASKS, concurrency=2, extra=["--lease", "5"])
    client = Client(pg_dsn, ClientSettings(pool_size=4))
    enqueued: list[str] = []
    outcomes: list[CallResult] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        # A steady trickle (not a flood) so the callers' messages are not stuck behind a backlog.
        while not stop.wait(0.02):
            key = f"ff{i}"
            try:
                client.enqueue("t.record", [key])
                enqueued.append(key)
            except PgQueueError:
                pass  # enqueue errors during the outage are expected: the caller knows
            i += 1

    def call() -> None:
        i = 0
        while not stop.is_set():
            outcomes.append(
                client.call("t.record", [f"call{threading.get_ident()}-{i}"], timeout=20)
            )
            i += 1

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(outcomes) >= 20, 30, "calls before the restart")
        pg_server.stop("fast")
        time.sleep(1.0)  # the outage itself, not a synchronisation
        pg_server.start()
        before = len(outcomes)
        wait_until(
            lambda: len([o for o in outcomes[before:] if o.ok]) >= 20, 60, "calls to succeed again"
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    # Every enqueue that returned a msg_id runs: nothing acknowledged is lost.
    wait_until(
        lambda: (
            runs.scalar(
                pg_dsn,
                "SELECT count(DISTINCT key) FROM test_runs WHERE phase='end' AND key = ANY(%s)",
                (enqueued,),
            )
            == len(enqueued)
        ),
        90,
        "every enqueued message to run",
        interval=0.2,
    )
    # Calls fail only in kinds the caller can act on, never by hanging or raising.
    assert {o.kind for o in outcomes} <= {"ok", "timeout", "enqueue_error"}
    assert worker.proc.poll() is None, "the worker reconnected by itself"
    client.close()


@pytest.mark.timeout(120)
def test_a_paused_worker_that_lost_its_lease_cannot_overwrite_or_ack(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    paused = workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--lease", "1"])
    client = Client(pg_dsn)
    outcome: list[CallResult] = []
    caller = threading.Thread(
        target=lambda: outcome.append(client.call("t.record", ["fenced", 3.0], timeout=60))
    )
    caller.start()
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE phase='start'") == 1,
        20,
        "the first worker to start the task",
    )
    os.kill(paused.pid, signal.SIGSTOP)  # a GC pause, a partition: it stops renewing
    try:
        workers.start(pg_dsn, tasks=TASKS, concurrency=1, extra=["--lease", "1"])
        caller.join(60)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert outcome[0].ok, outcome
    assert outcome[0].value == "fenced"
    # Both ran it (at-least-once), but the paused worker's late ack is fenced off.
    wait_until(lambda: "lease lost" in paused.log(), 20, "the paused worker to notice")
    status, text = http_get(paused.url("/metrics"))
    assert status == 200
    lost = [line for line in text.splitlines() if line.startswith("pgqueue_lease_lost_total ")]
    assert lost and float(lost[0].split()[1]) >= 1
    runs.wait_replies_taken(pg_dsn)
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0
    client.close()
