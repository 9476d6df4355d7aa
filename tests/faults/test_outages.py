"""Fault matrix, the database goes away under a worker: a read-only database mid-batch (a
standby after a failover), a crash (immediate stop) and restart mid-task with two workers, and a
network partition between the worker and Postgres. Every row: zero lost, zero doubled (see
tests/support/marks.py), every caller answered by its deadline."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgqueue import Client
from tests.faults.callers import Calls, start_calls
from tests.support import marks, runs
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, http_get, wait_until

TASKS = "tests.support.fault_tasks"


def _readyz(worker: object) -> int:
    return http_get(worker.url("/readyz"))[0]  # type: ignore[attr-defined]


def _start_calls_enqueued_durably(
    dsn: str, keys: list[str], seconds: float, timeout: float
) -> Calls:
    """Calls whose enqueues are on disk and whose claims are not. An enqueue commits
    asynchronously too (one lost in a crash is its caller's timeout, another row): the queue is
    paused while they land, and the resume's synchronous commit flushes them; the claims come
    after it."""
    with Client(dsn) as admin:
        admin.pause_queue("default", reason="test: enqueues first")
        calls = start_calls(dsn, keys, seconds, timeout=timeout)
        wait_until(
            lambda: runs.scalar(dsn, "SELECT count(*) FROM pgqueue.message") >= len(keys),
            30,
            "the calls to be enqueued",
        )
        admin.resume_queue("default")
    return calls


def _wal_writer_delay(dsn: str, value: str | None) -> None:
    """The WAL writer's delay (None: the default), which bounds how long an asynchronous
    commit can stay in the WAL buffers, where a crash loses it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if value is None:
            conn.execute("ALTER SYSTEM RESET wal_writer_delay")
        else:
            conn.execute(f"ALTER SYSTEM SET wal_writer_delay = '{value}'")
        conn.execute("SELECT pg_reload_conf()")


@pytest.mark.timeout(240)
def test_read_only_database_mid_batch(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # The worker logs in as its own role, so the test turns the database read-only for the
    # worker alone (as a failover to a standby would), and the callers keep their sessions.
    role = f"w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(role)))
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    info["user"] = role
    worker_dsn = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    log = tmp_path / "marks"
    worker = workers.start(
        worker_dsn,
        tasks=TASKS,
        concurrency=4,
        extra=["--lease", "3"],
        env={"PGQUEUE_TEST_MARKS": str(log)},
    )
    keys = [f"ro{i}" for i in range(12)]
    calls = start_calls(pg_dsn, keys, 1.5, timeout=120)
    wait_until(lambda: len(marks.starts(log)) >= 4, 30, "the first tasks to run")

    def sessions(action: str) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} " + action).format(sql.Identifier(role)))
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )

    sessions("SET default_transaction_read_only = on")
    read_only_at = time.monotonic()
    wait_until(lambda: _readyz(worker) != 200, 30, "/readyz to report not ready")
    # Tasks finish while the database refuses writes: their replies wait in the worker.
    wait_until(lambda: sum(marks.ends(log).values()) >= 4, 30, "tasks to finish meanwhile")
    assert _readyz(worker) != 200
    held_replies = sum(marks.ends(log).values()) - len(calls.results)
    sessions("RESET default_transaction_read_only")
    back_at = time.monotonic()
    wait_until(lambda: _readyz(worker) == 200, 30, "/readyz to be ready again")
    ready_again = time.monotonic() - back_at
    calls.join()
    calls.check(keys)
    assert max(marks.starts(log).values()) == 1, marks.starts(log)  # zero doubled
    assert worker.proc.poll() is None
    runs.wait_queue_empty(pg_dsn, 10, "every message settled")
    print(
        f"FIGURE read-only: {held_replies} finished replies held through "
        f"{back_at - read_only_at:.1f}s read-only; ready again {ready_again:.2f}s after"
    )


@pytest.mark.timeout(300)
def test_postgres_crash_and_restart_mid_task_with_two_workers(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "marks"
    # A lease longer than the outage: a claim that survived the crash is not re-claimed by the
    # other worker before its holder reconnects and renews (the row under test is the crash,
    # not a lease running out; see the frozen-worker row for that).
    for _ in range(2):
        workers.start(
            pg_dsn,
            tasks=TASKS,
            concurrency=3,
            extra=["--lease", "30"],
            env={"PGQUEUE_TEST_MARKS": str(log)},
        )
    keys = [f"crash{i}" for i in range(16)]
    calls = start_calls(pg_dsn, keys, 1.5, timeout=150)
    # A call's enqueue commits asynchronously (the client's choice: lost in a crash, it is the
    # caller's timeout). This row is about the worker's side, so every message is made durable
    # first: one synchronous commit flushes the WAL of every earlier commit.
    wait_until(
        lambda: (
            runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message")
            + sum(marks.ends(log).values())
            >= len(keys)
        ),
        60,
        "every call to be enqueued",
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wal_flush (at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO wal_flush DEFAULT VALUES")  # writes WAL: a flushing commit
    wait_until(lambda: len(marks.starts(log)) >= 4, 60, "the first tasks to run")
    pg_server.stop("immediate")
    crashed_at = time.monotonic()
    pg_server.start()
    restarted_in = time.monotonic() - crashed_at
    calls.join()
    answered_in = max(calls.answered_at.values()) - crashed_at

    def diagnose() -> str:
        rows = runs.query(
            pg_dsn,
            "SELECT msg_id, payload->'args'->>0, read_ct, extract(epoch FROM vt - now()), "
            "claimed_by FROM pgqueue.message",
        )
        dead = runs.query(pg_dsn, "SELECT msg_id, read_ct, reason FROM pgqueue.dead_letter")
        replies = runs.query(pg_dsn, "SELECT reply_key, status, error FROM pgqueue.result")
        logs = "\n".join(w.log()[-3000:] for w in workers.started)
        return (
            f"messages: {rows}\ndead: {dead}\nreplies: {replies}\n"
            f"starts: {marks.starts(log)}\n{logs}"
        )

    calls.check(keys, diagnose)
    started = marks.starts(log)
    assert sorted(started) == sorted(keys)
    assert max(started.values()) == 1, started  # exactly one run per call
    runs.wait_queue_empty(pg_dsn, 30, "every message settled")
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
    for w in workers.started:
        assert w.proc.poll() is None, w.log()
        wait_until(lambda w=w: _readyz(w) == 200, 30, "the workers to be ready again")
    print(
        f"FIGURE crash: restart took {restarted_in:.1f}s; last caller answered "
        f"{answered_in:.1f}s after the crash; runs per call max {max(started.values())}"
    )


@pytest.mark.timeout(240)
def test_network_partition_of_the_worker(
    pg_server: PgServer,
    pg_dsn: str,
    workers: WorkerFactory,
    proxy_factory: object,
    tmp_path: Path,
) -> None:
    proxy: FaultProxy = proxy_factory(pg_server.host, pg_server.port)  # type: ignore[operator]
    log = tmp_path / "marks"
    worker = workers.start(
        proxy.dsn_for(pg_dsn),
        tasks=TASKS,
        concurrency=4,
        extra=["--lease", "3"],
        env={"PGQUEUE_TEST_MARKS": str(log)},
    )
    keys = [f"net{i}" for i in range(12)]
    calls = start_calls(pg_dsn, keys, 1.0, timeout=120)
    wait_until(lambda: len(marks.starts(log)) >= 4, 30, "the first tasks to run")
    proxy.stall()
    stalled_at = time.monotonic()
    # Tasks finish during the partition; their replies cannot reach Postgres.
    wait_until(lambda: sum(marks.ends(log).values()) >= 4, 30, "tasks to finish meanwhile")
    time.sleep(5)  # the partition outlasts the 3 s lease: the fault under test, not a wait
    proxy.resume()
    resumed_at = time.monotonic()
    calls.join()
    calls.check(keys)
    assert max(marks.starts(log).values()) == 1, marks.starts(log)
    runs.wait_queue_empty(pg_dsn, 30, "every message settled")
    wait_until(lambda: _readyz(worker) == 200, 30, "/readyz ready again")
    adopted = worker.log_path.read_text().count("re-claimed by this worker")
    print(
        f"FIGURE partition: {resumed_at - stalled_at:.1f}s stall; last caller answered "
        f"{max(calls.answered_at.values()) - resumed_at:.2f}s after it ended; {adopted} "
        "messages re-claimed by their own worker and not run again"
    )


@pytest.mark.timeout(300)
def test_postgres_crash_right_after_the_replies_loses_no_ack(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Acks commit asynchronously (async_acks): a crash loses those still in Postgres's WAL
    # buffers, for up to 3 x wal_writer_delay (200 ms by default). Here the WAL writer waits its
    # longest (10 s), so a round's last acks (and the claims before them) are still in the
    # buffers when the server dies right after its callers got their replies; the worker must
    # take the claims back and write the acks again when it reconnects, or their messages
    # would run a second time after the restart quarantine.
    def wal_writer_delay(value: str | None) -> None:
        _wal_writer_delay(pg_dsn, value)

    wal_writer_delay("10s")
    try:
        log = tmp_path / "marks"
        worker = workers.start(
            pg_dsn,
            tasks=TASKS,
            concurrency=8,
            extra=["--lease", "60"],
            env={"PGQUEUE_TEST_MARKS": str(log)},
        )
        # Whether an ack was still unwritten when the server died depends on where the WAL
        # page boundaries fell: a round that lost none proves nothing, so it goes again.
        rounds, rewritten, keys = 0, 0.0, []
        while rewritten == 0 and rounds < 4:
            round_keys = [f"ack{rounds}-{i}" for i in range(8)]
            keys += round_keys
            calls = _start_calls_enqueued_durably(pg_dsn, round_keys, 0.3, timeout=60)
            calls.join()
            pg_server.stop("immediate")
            crashed_at = time.monotonic()
            pg_server.start()
            calls.check(round_keys)
            runs.wait_queue_empty(pg_dsn, 20, "the lost acks written again (the lease is 60 s)")
            settled_in = time.monotonic() - crashed_at
            wait_until(lambda: _readyz(worker) == 200, 30, "the worker to be ready again")
            rewritten = worker.metric("pgqueue_acks_rewritten_total")
            rounds += 1
        assert rewritten >= 1, f"no round lost an ack in {rounds} rounds\n{worker.log()[-3000:]}"
        started = marks.starts(log)
        assert sorted(started) == sorted(keys)
        assert max(started.values()) == 1, started  # zero doubled
        assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
        assert worker.proc.poll() is None, worker.log()
        print(
            f"FIGURE crash after replies: {rewritten:.0f} acks lost by the crash written again "
            f"in round {rounds}; queue empty {settled_in:.1f}s after the crash"
        )
    finally:
        wal_writer_delay(None)


@pytest.mark.timeout(420)
def test_postgres_crash_right_after_the_claims_runs_each_call_once(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Claims commit asynchronously (durable_claims off, the default), so a crash can lose the
    # claim of a call whose task already runs; its row is then waiting again as if never
    # claimed. With the WAL writer at its longest delay (10 s) the claims of a round are still
    # in the WAL buffers when the server dies, as soon as their 3 s tasks have started. The
    # first claim after the restart holds the waiting calls back (restart quarantine, 10 s);
    # each worker takes its lost claims back when it reconnects, and its runs go on: one run
    # per call.
    _wal_writer_delay(pg_dsn, "10s")
    try:
        log = tmp_path / "marks"
        started = [
            workers.start(
                pg_dsn,
                tasks=TASKS,
                concurrency=3,
                extra=["--lease", "60"],
                env={"PGQUEUE_TEST_MARKS": str(log)},
            )
            for _ in range(2)
        ]
        rounds, taken_back, keys = 0, 0.0, []
        while taken_back == 0 and rounds < 4:
            round_keys = [f"claim{rounds}-{i}" for i in range(6)]
            keys += round_keys
            want = len(marks.starts(log)) + len(round_keys)
            calls = _start_calls_enqueued_durably(pg_dsn, round_keys, 3.0, timeout=90)
            wait_until(
                lambda want=want: len(marks.starts(log)) >= want,
                60,
                "every call of the round to start",
            )
            pg_server.stop("immediate")
            crashed_at = time.monotonic()
            pg_server.start()
            calls.join()
            calls.check(round_keys)
            answered_in = max(calls.answered_at.values()) - crashed_at
            runs.wait_queue_empty(pg_dsn, 30, "every message settled")
            held = runs.scalar(pg_dsn, "SELECT held FROM pgqueue.server_epoch")
            taken_back = sum(w.metric("pgqueue_claims_reasserted_total") for w in started)
            rounds += 1
        assert taken_back >= 1, f"no round lost a claim in {rounds} rounds\n{started[0].log()}"
        runs_per_call = marks.starts(log)
        assert sorted(runs_per_call) == sorted(keys)
        assert max(runs_per_call.values()) == 1, runs_per_call  # zero doubled
        assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0
        for w in started:
            assert w.proc.poll() is None, w.log()
        print(
            f"FIGURE crash after claims: {taken_back:.0f} lost claims taken back by their "
            f"workers in round {rounds}; {held} waiting calls held back; last caller "
            f"answered {answered_in:.1f}s after the crash; runs per call max 1"
        )
    finally:
        _wal_writer_delay(pg_dsn, None)
