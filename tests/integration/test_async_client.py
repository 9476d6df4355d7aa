"""pgqueue.AsyncClient on a real Postgres with real workers: many awaits, one LISTEN session.

Hundreds of calls await on one event loop; each must get its own reply (every call echoes a
value of its own), the client must hold one LISTEN session whatever the number of waiters, and
the event loop must never stall while they wait (a watchdog task measures its lateness).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid

import psycopg
import pytest

from pgqueue import AsyncClient, ClientSettings, ConfigurationError
from tests.integration.test_pgbouncer import bouncer_dsn  # noqa: F401 - the PgBouncer fixture
from tests.support.loopwatch import LoopWatch
from tests.support.workers import WorkerFactory, wait_until

CALLS = 500
APP = "pgqueue-async-test"
PENDING_KEY = "SELECT reply_key FROM pgqueue.message"


def _client_sessions(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (APP,),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


@pytest.mark.asyncio
async def test_500_concurrent_calls_share_one_listen_session_and_never_block_the_loop(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=4)
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        warm = await client.call("demo.echo", ["warm-up"], timeout=60)
        assert warm.ok, warm
        tokens = [uuid.uuid4().hex for _ in range(CALLS)]
        # What a long-running service does after its start-up: the objects of every import (and
        # here pytest's) leave the collector's view, so that a full collection of them does not
        # stall the loop for 100-300 ms amid the burst of 500 calls.
        gc.freeze()
        # The 500 calls start together: their first steps (checking and encoding each call's
        # arguments, ~70 us apiece) all run in the loop's next iteration, ~35 ms for the burst
        # here, which is the caller's own work, not a stall. The watchdog is armed after it and
        # measures the waiting: pool checkouts, inserts, the listener's NOTIFYs, the replies.
        calls = [
            asyncio.ensure_future(client.call("demo.echo", [t], {"i": i}, timeout=120))
            for i, t in enumerate(tokens)
        ]
        burst = time.perf_counter()
        await asyncio.sleep(0)
        burst = time.perf_counter() - burst
        with LoopWatch() as watch:
            results = await asyncio.gather(*calls)
            sessions = await asyncio.to_thread(_client_sessions, pg_dsn)
        failed = [r for r in results if not r.ok]
        assert not failed, failed[:3]
        for i, (token, result) in enumerate(zip(tokens, results, strict=True)):
            assert result.value == {"args": [token], "kwargs": {"i": i}}, (i, result)
        assert len({r.reply_key for r in results}) == CALLS
        listener = client.listener
        assert listener is not None
        # One LISTEN session, the listener's, whatever the number of waiters; every other
        # session of the client is its pool's and never LISTENed.
        pids = [pid for pid, _ in sessions]
        assert pids.count(listener.backend_pid) == 1, sessions
        others = [query for pid, query in sessions if pid != listener.backend_pid]
        assert not [q for q in others if "listen" in q.lower()], sessions
        assert len(others) <= client.settings.pool_size, sessions
        assert listener.connects == 1
        # Each reply came once, in its NOTIFY or by the sweep (callers never polled).
        assert listener.inline + listener.swept >= CALLS, (listener.inline, listener.swept)
        print(
            f"\n{CALLS} calls: started in {burst * 1000:.1f} ms; {watch.summary()}; "
            f"{listener.inline} replies inline"
        )
        assert watch.blocked < 0.05, watch.summary()


@pytest.mark.asyncio
async def test_a_reply_whose_notify_never_came_is_found_by_the_listeners_sweep(
    pg_dsn: str,
) -> None:
    # No worker: the test stores the reply itself, without any NOTIFY.
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        listener = client.listener
        assert listener is not None
        # Until its LISTEN is in place a caller polls on its own (and would take the reply
        # itself): the row under test is the listener's sweep, so the call starts after it.
        deadline = time.monotonic() + 30
        while not listener.live:
            assert time.monotonic() < deadline, "the reply listener never started listening"
            await asyncio.sleep(0.01)
        pending = asyncio.ensure_future(client.call("demo.echo", ["x"], timeout=60))

        def store_reply() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                deadline = time.monotonic() + 30
                while True:
                    row = admin.execute("SELECT reply_key FROM pgqueue.message").fetchone()
                    if row is not None:
                        break
                    assert time.monotonic() < deadline, "the call's message never came"
                    time.sleep(0.02)
                admin.execute(
                    "INSERT INTO pgqueue.result (reply_key, status, result, expires_at) "
                    "VALUES (%s, 'completed', '\"by hand\"', now() + interval '1 hour')",
                    (row[0],),
                )

        await asyncio.to_thread(store_reply)
        result = await pending
        assert result.ok, result
        assert result.value == "by hand"
        assert listener.swept == 1


@pytest.mark.asyncio
async def test_wait_for_reply_finds_a_reply_stored_under_a_foreign_key(pg_dsn: str) -> None:
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        pending = asyncio.ensure_future(client.wait_for_reply("batch-7/job-1", timeout=60))

        def store_reply() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(
                    "INSERT INTO pgqueue.result (reply_key, status, error, expires_at) "
                    "VALUES ('batch-7/job-1', 'failed', 'ValueError: no', now() + interval '1h')"
                )

        await asyncio.to_thread(store_reply)
        result = await pending
        assert (result.kind, result.error) == ("task_error", "ValueError: no")
        missing = await client.wait_for_reply("batch-7/job-2", timeout=0.3)
        assert missing.kind == "timeout"
        bad = await client.wait_for_reply("no spaces", timeout=1)
        assert bad.kind == "enqueue_error" and "reply_key" in bad.error


@pytest.mark.asyncio
async def test_call_never_raises_for_bad_arguments_and_enqueue_names_the_field(
    pg_dsn: str,
) -> None:
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        cases: list[tuple[dict[str, object], str]] = [
            ({"task": "no spaces allowed"}, "task"),
            ({"task": 42}, "task"),
            ({"args": "not a list"}, "args"),
            ({"args": [object()]}, "args"),
            ({"kwargs": {1: 2}}, "kwargs"),
            ({"priority": 0}, "priority"),
            ({"queue": ""}, "queue"),
            ({"tenant": None}, "tenant"),
            ({"timeout": -1}, "timeout"),
            ({"timeout": float("nan")}, "timeout"),
        ]
        for override, field in cases:
            call: dict[str, object] = {"task": "demo.echo", "timeout": 5, **override}
            task = call.pop("task")
            result = await client.call(task, **call)  # type: ignore[arg-type]
            assert result.kind == "enqueue_error", (override, result)
            assert field in result.error, (override, result.error)
        with pytest.raises(ConfigurationError, match="priority"):
            await client.enqueue("demo.echo", priority=11)
        assert isinstance(await client.enqueue("demo.echo", ["ok"]), int)
    closed = await client.call("demo.echo", timeout=1)
    assert closed.kind == "enqueue_error"
    assert "closed" in closed.error


@pytest.mark.asyncio
async def test_a_bad_dsn_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncClient("postgresql://u:s3cr%et@[::1/db")
    assert "s3cr" not in str(info.value)


@pytest.mark.asyncio
async def test_pooled_client_without_a_listener_polls_its_replies(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    settings = ClientSettings(pooled=True)
    async with AsyncClient(pg_dsn, settings, application_name=APP) as client:
        results = await asyncio.gather(
            *(client.call("demo.echo", [i], timeout=60) for i in range(50))
        )
        assert client.listener is None
    assert [r.value for r in results] == [{"args": [i], "kwargs": {}} for i in range(50)]


@pytest.mark.asyncio
async def test_pooled_client_calls_and_enqueues_through_pgbouncer_transaction_pooling(
    bouncer_dsn: str,  # noqa: F811 - the fixture imported above
    workers: WorkerFactory,
) -> None:
    workers.start(bouncer_dsn, concurrency=2, extra=["--pooled", "--poll-interval", "0.05"])
    settings = ClientSettings(pooled=True)
    async with AsyncClient(bouncer_dsn, settings, application_name=APP) as client:
        ids = await asyncio.gather(*(client.enqueue("demo.noop") for _ in range(20)))
        assert len(set(ids)) == 20
        results = await asyncio.gather(
            *(client.call("demo.echo", [f"pgb-{i}"], timeout=60) for i in range(50))
        )
        assert client.listener is None  # no LISTEN through a transaction pooler
    assert [r.value for r in results] == [{"args": [f"pgb-{i}"], "kwargs": {}} for i in range(50)]


@pytest.mark.asyncio
async def test_a_reply_forged_on_the_shared_channel_is_not_believed(pg_dsn: str) -> None:
    # No worker: the "attacker" NOTIFYs a made-up reply for the call's key on the shared
    # channel (anyone who can connect may); only the stored row may answer the call.
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        pending = asyncio.ensure_future(client.call("demo.echo", ["x"], timeout=60))
        listener = client.listener
        assert listener is not None

        def forge_then_store() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                deadline = time.monotonic() + 30
                while (row := admin.execute(PENDING_KEY).fetchone()) is None:
                    assert time.monotonic() < deadline, "the call's message never came"
                    time.sleep(0.02)
                key = str(row[0])
                # The call's message can land before the listener's LISTEN does: a NOTIFY sent
                # before it is heard by no one, so wait for the listener to be in place.
                wait_until(lambda: listener.live, 30, "the reply listener to be listening")
                forged = json.dumps({"k": key, "s": "completed", "r": "forged", "e": ""})
                heard = listener.delivered
                admin.execute("SELECT pg_notify('pgqueue_reply', %s)", (forged,))
                wait_until(lambda: listener.delivered > heard, 30, "the forged note to arrive")
                admin.execute(
                    "INSERT INTO pgqueue.result (reply_key, status, result, expires_at) "
                    "VALUES (%s, 'completed', '\"real\"', now() + interval '1 hour')",
                    (key,),
                )

        await asyncio.to_thread(forge_then_store)
        result = await pending
        assert result.ok and result.value == "real", result
        assert listener.inline == 0


@pytest.mark.asyncio
async def test_replies_too_big_for_a_notify_payload_are_read_from_their_rows(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        bigs = [f"{i}-" + "x" * 20_000 for i in range(20)]
        results = await asyncio.gather(*(client.call("demo.echo", [b], timeout=60) for b in bigs))
        assert [r.value for r in results] == [{"args": [b], "kwargs": {}} for b in bigs]
        listener = client.listener
        assert listener is not None and listener.inline == 0


@pytest.mark.asyncio
async def test_a_cancelled_call_leaves_no_waiter_and_the_client_works_on(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    async with AsyncClient(pg_dsn, application_name=APP) as client:
        listener = client.listener
        assert listener is not None
        # No worker yet: the calls wait; a client that went away cancels them (FastAPI does).
        calls = [client.call("demo.echo", [i], timeout=60) for i in range(20)]
        pending = [asyncio.ensure_future(call) for call in calls]

        def queued() -> int:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                row = admin.execute("SELECT count(*) FROM pgqueue.message").fetchone()
            return int(row[0]) if row else 0

        deadline = time.monotonic() + 30
        while await asyncio.to_thread(queued) < 20:
            assert time.monotonic() < deadline, "the calls' messages never came"
            await asyncio.sleep(0.02)
        for task in pending:
            task.cancel()
        done = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(d, asyncio.CancelledError) for d in done)
        assert listener.waiting == 0
        workers.start(pg_dsn, concurrency=2)
        after = await client.call("demo.echo", ["after"], timeout=60)
        assert after.ok and after.value == {"args": ["after"], "kwargs": {}}, after


@pytest.mark.asyncio
async def test_a_call_keeps_its_callers_deadline_behind_a_busy_pool(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    """The message's deadline is the caller's, however long the call waited for the pool's one
    connection (held here by an enqueue stuck behind a table lock for 0.6 s): resumed as the
    call returns, the queue's worker dead-letters the call's message instead of running it."""
    async with AsyncClient(settings=ClientSettings(dsn=pg_dsn, pool_size=1)) as client:
        await client.pause_queue("pq")
        workers.start(pg_dsn, queues="pq", extra=["--poll-interval", "0.1"])
        with psycopg.connect(pg_dsn) as locker, psycopg.connect(pg_dsn, autocommit=True) as look:
            locker.execute("LOCK TABLE pgqueue.message IN EXCLUSIVE MODE")
            first = asyncio.ensure_future(client.enqueue("demo.pid", queue="pq"))

            def blocked() -> bool:
                row = look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ).fetchone()
                return row is not None and row[0] == 1

            # The enqueue holds the pool's connection, waiting on the lock.
            await asyncio.to_thread(wait_until, blocked, 10, "the enqueue to wait on the lock")
            asyncio.get_running_loop().call_later(0.6, locker.rollback)
            result = await client.call("demo.pid", queue="pq", timeout=1.0)
            await first
        assert (result.ok, result.kind) == (False, "timeout"), result
        await client.resume_queue("pq")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM pgqueue.message").fetchone() == (0,),
            30,
            "both messages to be settled",
        )
        dead = [r[0][:15] for r in conn.execute("SELECT reason FROM pgqueue.dead_letter")]
    assert dead == ["deadline passed"], dead
