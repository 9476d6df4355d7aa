"""Pausing a queue (issue 19): the claim gives nothing from a paused queue, real workers stop
claiming from it within a poll while running tasks finish, and a resume drains it at once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgqueue import (
    AsyncClient,
    Client,
    ClientSettings,
    ConfigurationError,
    PgQueueError,
    QueuePause,
    sqlfiles,
)
from pgqueue.claiming import claim_params
from tests.integration.test_cli import pgq
from tests.support.exporters import ExporterFactory, value
from tests.support.workers import WorkerFactory, wait_until


def _connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def _put(conn: psycopg.Connection[Any], queue: str, n: int) -> None:
    conn.execute(
        "INSERT INTO pgqueue.message (queue, task_name, payload) "
        "SELECT %s, 'x', '{}' FROM generate_series(1, %s)",
        (queue, n),
    )


def _claim(conn: psycopg.Connection[dict[str, Any]], queue: str) -> list[int]:
    rows = conn.execute(sqlfiles.query("claim"), claim_params(queue, 10, 30.0, "w")).fetchall()
    return [r["msg_id"] for r in rows]


def test_the_claim_gives_nothing_from_a_paused_queue_and_everything_after_resume(
    pg_dsn: str,
) -> None:
    with _connect(pg_dsn) as conn, Client(pg_dsn) as client:
        _put(conn, "a", 3)
        _put(conn, "b", 3)
        first = client.pause_queue("a", reason="migration 42", by="tester")
        assert (first.queue, first.paused, first.changed) == ("a", True, True)
        assert (first.paused_by, first.reason) == ("tester", "migration 42")
        assert _claim(conn, "a") == []
        assert len(_claim(conn, "b")) == 3  # other queues are untouched

        again = client.pause_queue("a", reason="another", by="someone else")
        assert (again.paused, again.changed) == (True, False)
        # The first pause's who, when and why stay.
        assert (again.paused_by, again.reason, again.paused_at) == (
            "tester",
            "migration 42",
            first.paused_at,
        )
        assert "already paused" in again.describe()

        # Enqueueing into a paused queue still works.
        client.enqueue("x", queue="a")
        stats = {s.queue: s for s in client_stats(pg_dsn)}
        assert stats["a"].paused and stats["a"].ready == 4 and not stats["b"].paused

        resumed = client.resume_queue("a")
        assert (resumed.paused, resumed.changed, resumed.paused_by) == (False, True, "tester")
        assert len(_claim(conn, "a")) == 4
        idle = client.resume_queue("a")
        assert (idle.paused, idle.changed) == (False, False)
        assert "was not paused" in idle.describe()


def client_stats(dsn: str) -> list[Any]:
    from pgqueue import admin

    return admin.queue_stats(dsn)


def test_a_queue_with_no_messages_can_be_paused_and_stats_lists_it(pg_dsn: str) -> None:
    with Client(pg_dsn) as client:
        state = client.pause_queue("later")
        assert state.changed and state.paused_by.startswith("client ")
        [stats] = client_stats(pg_dsn)
        assert (stats.queue, stats.paused, stats.ready) == ("later", True, 0)
        client.enqueue("x", queue="later")
        with _connect(pg_dsn) as conn:
            assert _claim(conn, "later") == []


@pytest.mark.parametrize(
    ("queue", "reason", "field"),
    [("bad name!", "", "queue"), ("", "", "queue"), ("ok", "x" * 501, "reason"),
     ("ok", "two\nlines", "reason")],
)  # fmt: skip
def test_bad_input_is_an_error_naming_the_field(
    pg_dsn: str, queue: str, reason: str, field: str
) -> None:
    with Client(pg_dsn) as client, pytest.raises(ConfigurationError) as caught:
        client.pause_queue(queue, reason=reason)
    assert caught.value.field == field
    with _connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) AS n FROM pgqueue.queue_pause").fetchone() == {"n": 0}


def test_a_pause_waits_for_the_claims_in_flight_and_later_claims_see_it(pg_dsn: str) -> None:
    """The claim's shared lock against the pause's exclusive one: a claim that began before the
    pause commits first (the pause waits for it), and no claim after the pause returns rows."""
    with _connect(pg_dsn) as setup:
        _put(setup, "q", 5)
    claimer = psycopg.connect(pg_dsn, row_factory=dict_row)  # a claim left open in a transaction
    rows = claimer.execute(sqlfiles.query("claim"), claim_params("q", 1, 30.0, "w")).fetchall()
    assert len(rows) == 1
    paused: list[QueuePause] = []
    pauser = threading.Thread(
        target=lambda: paused.append(Client(pg_dsn).pause_queue("q", by="t")), daemon=True
    )
    pauser.start()
    with _connect(pg_dsn) as watch:

        def pause_waits() -> bool:
            row = watch.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            return bool(row and row["n"] == 1)

        wait_until(pause_waits, 30, "the pause to wait for the claim in flight")
        assert not paused
        claimer.commit()
        pauser.join(30)
        assert paused and paused[0].changed
        assert _claim(watch, "q") == []
    claimer.close()


@pytest.mark.asyncio
async def test_the_async_client_pauses_and_resumes_too(pg_dsn: str) -> None:
    async with AsyncClient(pg_dsn) as client:
        state = await client.pause_queue("a", reason="async", by="tester")
        assert (state.paused, state.changed, state.reason) == (True, True, "async")
        assert not (await client.pause_queue("a")).changed
        with pytest.raises(ConfigurationError) as caught:
            await client.pause_queue("not valid")
        assert caught.value.field == "queue"
        assert (await client.resume_queue("a")).changed
        assert not (await client.resume_queue("a")).changed


def test_an_unreachable_database_is_a_pgqueue_error_without_the_password() -> None:
    dsn = "postgresql://app:s3cret-pw@127.0.0.1:1/app"
    client = Client(dsn, ClientSettings(connect_timeout=1))
    try:
        with pytest.raises(PgQueueError) as caught:
            client.pause_queue("a")
        assert "pause_queue failed" in str(caught.value)
        assert "s3cret-pw" not in str(caught.value)
    finally:
        client.close()


# -- real workers ------------------------------------------------------------------------------


def _state(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE read_ct = 0) AS unclaimed,"
        " count(*) FILTER (WHERE read_ct > 0) AS claimed FROM pgqueue.message WHERE queue = 'pq'"
    ).fetchone()
    runs = conn.execute(
        "SELECT count(*) FILTER (WHERE phase = 'start') AS started,"
        " count(*) FILTER (WHERE phase = 'end') AS ended FROM test_runs"
    ).fetchone()
    assert row is not None and runs is not None
    return {**row, **runs}


def test_three_workers_stop_claiming_a_paused_queue_and_drain_it_on_resume(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    from tests.support import core_tasks

    total = 90
    with _connect(pg_dsn) as conn, Client(pg_dsn) as client:
        conn.execute(core_tasks.DDL)
        fleet = [
            workers.start(
                pg_dsn,
                tasks="tests.support.core_tasks",
                queues="pq",
                concurrency=2,
                extra=["--poll-interval", "0.5"],
                wait=False,
            )
            for _ in range(3)
        ]
        # The whole fleet up before the work: a first worker alone could drain the 90 before
        # a slow start of the others, and leave nothing unclaimed for the pause to hold.
        for worker in fleet:
            worker.wait_ready()
        for i in range(total):
            client.enqueue("t.record", [f"k{i}", 0.3], queue="pq")
        wait_until(lambda: _state(conn)["started"] >= 6, 60, "the fleet to start tasks")

        client.pause_queue("pq", reason="acceptance", by="test")
        # The pause returned: no claim of the queue is in flight, so what is claimed now is all
        # that will ever be claimed until the resume.
        at_pause = _state(conn)
        polls = [w.metric("pgqueue_worker_claims_total", queue="pq") for w in fleet]
        assert at_pause["unclaimed"] > 0, at_pause

        # Every worker polls the queue twice more (a full poll interval after the pause, each
        # claim returning nothing) and every task it held runs to its end.
        def polled_and_settled() -> bool:
            after = [w.metric("pgqueue_worker_claims_total", queue="pq") for w in fleet]
            state = _state(conn)
            return all(a >= p + 2 for a, p in zip(after, polls, strict=True)) and (
                state["claimed"] == 0
            )

        wait_until(polled_and_settled, 60, "every worker to poll twice and settle its tasks")
        later = _state(conn)
        assert later["unclaimed"] == at_pause["unclaimed"], (at_pause, later)
        assert later["started"] == later["ended"] == total - at_pause["unclaimed"]
        # One more poll interval each, measured by the workers' own counters: still nothing.
        polls = [w.metric("pgqueue_worker_claims_total", queue="pq") for w in fleet]
        wait_until(
            lambda: all(
                w.metric("pgqueue_worker_claims_total", queue="pq") >= p + 1
                for w, p in zip(fleet, polls, strict=True)
            ),
            60,
            "another poll of every worker",
        )
        assert _state(conn) == later
        stats = {s.queue: s for s in client_stats(pg_dsn)}
        assert stats["pq"].paused and stats["pq"].ready == later["unclaimed"]

        resumed_at = time.monotonic()
        assert client.resume_queue("pq").changed
        wait_until(
            lambda: _state(conn)["ended"] == total and _state(conn)["unclaimed"] == 0,
            120,
            "the fleet to drain the queue after the resume",
        )
        took = time.monotonic() - resumed_at
        keys = conn.execute(
            "SELECT key, count(*) AS n FROM test_runs WHERE phase = 'end' GROUP BY key"
        ).fetchall()
        assert len(keys) == total and {r["n"] for r in keys} == {1}
        assert conn.execute("SELECT count(*) AS n FROM pgqueue.dead_letter").fetchone() == {"n": 0}
        print(f"drained {later['unclaimed']} messages in {took:.2f}s after the resume")


def test_resume_wakes_idle_workers_at_once(pg_dsn: str, workers: WorkerFactory) -> None:
    """A worker with a long poll interval claims from a resumed queue on the resume's NOTIFY."""
    with _connect(pg_dsn) as conn, Client(pg_dsn) as client:
        client.pause_queue("pq")
        worker = workers.start(pg_dsn, queues="pq", extra=["--poll-interval", "600"])
        client.enqueue("demo.noop", queue="pq")  # its NOTIFY wakes the worker: a claim, empty
        wait_until(
            lambda: worker.metric("pgqueue_worker_claims_total", queue="pq") >= 1,
            60,
            "the worker's claim after the enqueue's wake-up",
        )
        # A worker that starts on a paused queue says why it stays idle.
        wait_until(lambda: "queue pq is paused since" in worker.log(), 30, "the start-up warning")
        assert "until `pgqueue queue resume pq`" in worker.log()
        assert conn.execute("SELECT read_ct FROM pgqueue.message").fetchone() == {"read_ct": 0}
        client.resume_queue("pq")
        wait_until(
            lambda: (
                conn.execute("SELECT count(*) AS n FROM pgqueue.message").fetchone() == {"n": 0}
            ),
            30,
            "the resumed queue's message to run (long before the 600 s poll)",
        )


def test_a_call_into_a_paused_queue_times_out_and_never_runs(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    """As documented: a call waits like any unclaimed call (its caller gets kind="timeout"),
    and once resumed the message whose caller gave up is dead-lettered, not run."""
    with _connect(pg_dsn) as conn, Client(pg_dsn) as client:
        client.pause_queue("pq")
        worker = workers.start(pg_dsn, queues="pq", extra=["--poll-interval", "0.2"])
        result = client.call("demo.pid", queue="pq", timeout=1.0)
        assert (result.ok, result.kind) == (False, "timeout"), result
        client.resume_queue("pq")
        wait_until(
            lambda: (
                conn.execute("SELECT count(*) AS n FROM pgqueue.dead_letter").fetchone() == {"n": 1}
            ),
            30,
            "the abandoned call's message in the dead-letter table",
        )
        reason = conn.execute("SELECT reason FROM pgqueue.dead_letter").fetchone()
        assert reason is not None and "deadline" in reason["reason"], reason
        assert conn.execute("SELECT count(*) AS n FROM pgqueue.message").fetchone() == {"n": 0}
        assert worker.proc.poll() is None


def test_a_call_keeps_its_callers_deadline_however_late_its_insert_reaches_the_server(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    """The message's deadline is the caller's: a call that spent 0.6 s of its 1 s waiting for
    the pool's one connection must not run once its caller gave up, even when a worker claims
    it 0.1 s after (the queue resumed as the call returns)."""
    with (
        _connect(pg_dsn) as conn,
        Client(settings=ClientSettings(dsn=pg_dsn, pool_size=1)) as client,
    ):
        client.pause_queue("pq")
        workers.start(pg_dsn, queues="pq", extra=["--poll-interval", "0.1"])
        held, release = threading.Event(), threading.Event()

        def hold_the_pool() -> None:
            with client.connection():
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_pool)
        holder.start()
        assert held.wait(10)
        timer = threading.Timer(0.6, release.set)
        timer.start()
        try:
            result = client.call("demo.pid", queue="pq", timeout=1.0)
        finally:
            release.set()
            holder.join()
        assert (result.ok, result.kind) == (False, "timeout"), result
        client.resume_queue("pq")
        wait_until(
            lambda: (
                conn.execute("SELECT count(*) AS n FROM pgqueue.message").fetchone() == {"n": 0}
            ),
            30,
            "the message to be settled",
        )
        dead = conn.execute("SELECT reason FROM pgqueue.dead_letter").fetchall()
        assert [r["reason"][:15] for r in dead] == ["deadline passed"], dead
        assert conn.execute("SELECT count(*) AS n FROM pgqueue.result").fetchone() == {"n": 1}


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_export_pgqueue_queue_paused_per_queue(pg_dsn: str, tmp_path: Path) -> None:
    """``pgqueue exporter`` (and a worker's sampler: the same collector) export
    ``pgqueue_queue_paused{queue}``: 1 while paused, 0 once resumed, even for an empty queue."""
    factory = ExporterFactory(tmp_path)
    try:
        with Client(pg_dsn) as client:
            client.enqueue("x", queue="orders")
            client.pause_queue("mail")  # no messages at all: still a series
            exporter = factory.start(pg_dsn)

            def paused(queue: str) -> float | None:
                return value(exporter.scrape(), "pgqueue_queue_paused", queue=queue)

            wait_until(lambda: paused("mail") == 1, 30, "mail to read paused")
            assert paused("orders") == 0
            client.pause_queue("orders")
            wait_until(lambda: paused("orders") == 1, 30, "orders to read paused")
            client.resume_queue("mail")
            client.resume_queue("orders")
            wait_until(
                lambda: paused("orders") == 0 and paused("mail") == 0, 30, "both to read resumed"
            )
            assert exporter.stop() == 0
    finally:
        factory.stop_all()


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_pause_and_resume_are_idempotent_and_show_in_stats(pg_dsn: str) -> None:
    done = pgq("queue", "pause", "orders", "--reason", "deploy 7", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "queue orders paused: workers claim nothing more from it (deploy 7)"
    )
    done = pgq("queue", "pause", "orders", "--json", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["paused"] is True and state["changed"] is False
    assert state["reason"] == "deploy 7" and state["paused_by"].startswith("cli ")
    done = pgq("queue", "pause", "orders", dsn=pg_dsn)
    assert (
        "was already paused since" in done.stdout and "(deploy 7); nothing changed" in done.stdout
    )

    pgq("enqueue", "demo.noop", "--queue", "orders", dsn=pg_dsn)
    done = pgq("queue", "show", "orders", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("queue orders is paused since ") and " by cli " in first
    assert first.endswith("(deploy 7): no worker claims from it")
    shown = json.loads(pgq("queue", "show", "orders", "--json", dsn=pg_dsn).stdout)
    assert shown["paused"]["reason"] == "deploy 7" and len(shown["messages"]) == 1
    pgq("queue", "purge", "orders", "--yes", dsn=pg_dsn)
    pgq("dlq", "purge", "--yes", dsn=pg_dsn)

    done = pgq("stats", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.strip().splitlines()
    assert (
        header.split()[-1] == "PAUSED" and row.split()[0] == "orders" and row.split()[-1] == "yes"
    )
    done = pgq("queue", "list", "--json", dsn=pg_dsn)
    assert json.loads(done.stdout) == [
        {"queue": "orders", "ready": 0, "in_flight": 0, "delayed": 0, "dead": 0,
         "oldest_age": 0.0, "paused": True}
    ]  # fmt: skip

    done = pgq("queue", "resume", "orders", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("queue orders resumed (paused since ")
    assert done.stdout.rstrip().endswith("(deploy 7)): workers drain it again")
    done = pgq("queue", "resume", "orders", "--json", dsn=pg_dsn)
    assert json.loads(done.stdout)["changed"] is False
    assert json.loads(pgq("queue", "show", "orders", "--json", dsn=pg_dsn).stdout)["paused"] is None
    done = pgq("queue", "resume", "orders", dsn=pg_dsn)
    assert done.stdout.strip() == "queue orders was not paused; nothing changed"
    assert pgq("stats", dsn=pg_dsn).stdout.strip() == (
        "no queues have messages or dead letters, and none is paused"
    )


def test_cli_rejects_a_bad_queue_name_and_reason_naming_them(pg_dsn: str) -> None:
    done = pgq("queue", "pause", "no spaces", dsn=pg_dsn)
    assert done.returncode == 2
    assert "NAME" in done.stderr and "invalid queue name" in done.stderr
    done = pgq("queue", "pause", "ok", "--reason", "x" * 501, dsn=pg_dsn)
    assert done.returncode == 2, done.stderr
    assert "reason" in done.stderr and "at most 500 characters" in done.stderr
