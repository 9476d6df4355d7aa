"""One waiting worker is woken per message, and a lost wake-up costs a poll, never the message.

Issue 20: every enqueue used to NOTIFY the one channel every idle worker listens on, and each
of them claimed. Now an idle worker records itself in ``pgqueue.waiting_worker`` and an enqueue
takes one such row and NOTIFYs that worker alone (architecture §3; ``pgqueue.waking``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from pgqueue import AsyncClient, Client, producing, sqlfiles
from pgqueue.settings import ClientSettings
from pgqueue.store import calls
from pgqueue.waking import Waiter, channel_of
from tests.support import statements
from tests.support.workers import WorkerFactory, WorkerProcess, wait_until

# Long: a message picked up at all within these tests was picked up by a wake-up, not a poll.
NO_POLL = {"PGQUEUE_POLL_INTERVAL": "60"}


def _waiting(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT worker_id, channel, queues FROM pgqueue.waiting_worker WHERE waiting "
            "ORDER BY since DESC"
        ).fetchall()


def _start_idle(workers: WorkerFactory, dsn: str, n: int, env: dict[str, str]) -> list[Any]:
    started = [
        workers.start(dsn, concurrency=1, extra=["--pool", "inline"], env=env) for _ in range(n)
    ]
    wait_until(lambda: len(_waiting(dsn)) == n, 60, f"{n} workers recorded as waiting")
    return started


def _enqueue(conn: psycopg.Connection[Any], queue: str = "default", delay: float = 0.0) -> Any:
    """One message through the client's own statement; returns how many workers it woke."""
    params = producing.message_params(
        ClientSettings(dsn="host=unused"), "demo.noop", [], {}, queue, 5, "", delay
    )
    rows = producing.execute_on(conn, calls.enqueue(params))
    return rows[0]["notified"]


def test_sequential_calls_wake_one_of_many_idle_workers(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    _start_idle(workers, pg_dsn, 6, NO_POLL)
    with Client(settings=ClientSettings(dsn=pg_dsn)) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        statements.reset(pg_dsn)
        for i in range(20):
            result = client.call("demo.echo", [i], timeout=30)
            assert result.ok, result
            assert result.value == {"args": [i], "kwargs": {}}
    # Every idle worker used to claim on every enqueue (6 claims a message, 5 of them empty).
    claims = statements.calls(pg_dsn, "%pgqueue.claim(%")
    assert claims <= 30, f"{claims} claim statements for 20 calls"


def test_an_enqueue_wakes_as_many_workers_as_it_has_messages(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    _start_idle(workers, pg_dsn, 3, NO_POLL)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert _enqueue(conn, delay=30.0) is None  # nobody can claim it yet: nobody is woken
        assert len(_waiting(pg_dsn)) == 3
        assert _enqueue(conn) == 1
    wait_until(lambda: len(_waiting(pg_dsn)) == 3, 30, "the woken worker to wait again")
    with Client(settings=ClientSettings(dsn=pg_dsn)) as client:
        client.enqueue_many([producing.Message("demo.noop") for _ in range(2)])
    wait_until(lambda: len(_waiting(pg_dsn)) == 3, 30, "both woken workers to wait again")


def test_a_busy_fleet_gets_one_shared_notify(pg_dsn: str, workers: WorkerFactory) -> None:
    _start_idle(workers, pg_dsn, 1, NO_POLL)
    with (
        Client(settings=ClientSettings(dsn=pg_dsn)) as client,
        psycopg.connect(pg_dsn, autocommit=True) as shared,
    ):
        shared.execute("LISTEN pgqueue_enqueue")
        client.enqueue("demo.sleep", [3])
        wait_until(lambda: not _waiting(pg_dsn), 30, "the only worker to be busy")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert _enqueue(conn) == 0  # nobody waits: the shared channel, no worker's own
        notes = list(shared.notifies(timeout=10, stop_after=1))
        assert [n.payload for n in notes] == ["default"]
        wait_until(lambda: len(_waiting(pg_dsn)) == 1, 60, "both messages done")


def test_a_wake_up_lost_with_its_worker_costs_a_poll_not_the_message(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    started = _start_idle(workers, pg_dsn, 2, {"PGQUEUE_POLL_INTERVAL": "1"})
    # The next enqueue takes the most recently idle worker's row: kill that worker first.
    victim_id = _waiting(pg_dsn)[0]["worker_id"]
    victim = next(w for w in started if victim_id.endswith(f":{w.pid}"))
    victim.kill()
    with Client(settings=ClientSettings(dsn=pg_dsn)) as client:
        result = client.call("demo.echo", ["after the kill"], timeout=30)
    assert result.ok, result
    assert result.value == {"args": ["after the kill"], "kwargs": {}}
    # The enqueue took the dead worker's row (its wake-up went nowhere); the survivor's poll
    # found the message.
    assert victim_id not in [w["worker_id"] for w in _waiting(pg_dsn)]


def test_a_stopping_worker_is_no_longer_woken(pg_dsn: str, workers: WorkerFactory) -> None:
    (worker,) = _start_idle(workers, pg_dsn, 1, NO_POLL)
    assert isinstance(worker, WorkerProcess)
    assert worker.terminate(timeout=60) == 0
    assert _waiting(pg_dsn) == []


def test_a_worker_marking_itself_waiting_right_now_still_hears_the_enqueue(pg_dsn: str) -> None:
    """The race pgqueue.wake covers, step by step on real sessions: a worker's mark not yet
    committed (its claim could not see the message either) makes the enqueue NOTIFY the shared
    channel, which the worker hears; once committed, the next enqueue wakes it alone."""
    wait_for_work = sqlfiles.query("wait_for_work")
    me = {"worker_id": "w1", "channel": channel_of("w1"), "queues": ["default"]}
    with (
        psycopg.connect(pg_dsn) as worker,
        psycopg.connect(pg_dsn, autocommit=True) as listen,
        psycopg.connect(pg_dsn, autocommit=True) as enqueuer,
    ):
        listen.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(me["channel"])))
        listen.execute("LISTEN pgqueue_enqueue")
        worker.execute(wait_for_work, me)  # in flight: not committed yet
        assert _enqueue(enqueuer) == 0
        worker.commit()
        notes = list(listen.notifies(timeout=10, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("pgqueue_enqueue", "default")]
        assert _enqueue(enqueuer) == 1
        notes = list(listen.notifies(timeout=10, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [(me["channel"], "default")]
        assert _waiting(pg_dsn) == []


def test_a_loaded_worker_claims_again_without_a_mark_and_an_empty_claim_marks(
    pg_dsn: str,
) -> None:
    """Under load nobody waits, so every enqueue NOTIFYs the shared channel: a worker whose
    short claim found work and that heard such a NOTIFY since claims again at once instead of
    writing a mark an enqueue would then have to take (a statement and a targeted NOTIFY per
    message). An empty claim marks all the same, or idle workers that heard one NOTIFY
    together would go on claiming together."""
    waiter = Waiter("w3", ("default",), enabled=True)
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        waiter.claiming()
        waiter.heard("pgqueue_enqueue")  # an enqueue found nobody waiting while it claimed
        waiter.claimed(conn, 4, 1)
        assert _waiting(pg_dsn) == []
        assert not waiter.holds_off(0.0, 60.0)  # it claims at once
        waiter.claiming()
        waiter.heard("pgqueue_enqueue")
        waiter.claimed(conn, 4, 0)
        assert [w["worker_id"] for w in _waiting(pg_dsn)] == ["w3"]
        assert not waiter.holds_off(0.0, 60.0)  # what it heard is served by one more claim
        waiter.claiming()
        waiter.claimed(conn, 4, 0)
        assert waiter.holds_off(0.0, 60.0)  # now it waits for its own wake-up
        with psycopg.connect(pg_dsn, autocommit=True) as enqueuer:
            assert _enqueue(enqueuer) == 1
        waiter.heard(channel_of("w3"))
        waiter.claiming()
        waiter.claimed(conn, 4, 1)  # short, and nothing heard since: marked as before
        assert [w["worker_id"] for w in _waiting(pg_dsn)] == ["w3"]


def test_a_worker_waits_on_all_its_queues(pg_dsn: str) -> None:
    me = {"worker_id": "w2", "channel": channel_of("w2"), "queues": ["a", "b"]}
    with (
        psycopg.connect(pg_dsn, autocommit=True) as worker,
        psycopg.connect(pg_dsn, autocommit=True) as enqueuer,
    ):
        worker.execute(sqlfiles.query("wait_for_work"), me)
        assert _enqueue(enqueuer, queue="elsewhere") == 0
        assert _enqueue(enqueuer, queue="b") == 1


def _listens(dsn: str) -> int:
    """How often a session of this database started a reply listener (pgqueue.listen_replies)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query LIKE '%listen_replies%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_polling_client_holds_no_listen_session(pg_dsn: str, workers: WorkerFactory) -> None:
    """reply_wait=poll: no LISTEN session for Postgres to signal on every NOTIFY (issue 20)."""
    workers.start(pg_dsn, concurrency=1, extra=["--pool", "inline"])
    with Client(settings=ClientSettings(dsn=pg_dsn, reply_wait="poll")) as client:
        for i in range(5):
            result = client.call("demo.echo", [i], timeout=30)
            assert result.ok, result
            assert result.value == {"args": [i], "kwargs": {}}
        assert client.listener is None
        assert _listens(pg_dsn) == 0
    with Client(settings=ClientSettings(dsn=pg_dsn)) as listening:
        assert listening.call("demo.echo", ["listen"], timeout=30).ok
        wait_until(lambda: _listens(pg_dsn) == 1, 30, "the default client's reply listener")


def test_a_polling_async_client_holds_no_listen_session(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1, extra=["--pool", "inline"])

    async def calls() -> None:
        settings = ClientSettings(dsn=pg_dsn, reply_wait="poll")
        async with AsyncClient(settings=settings) as client:
            results = await asyncio.gather(
                *(client.call("demo.echo", [i], timeout=30) for i in range(5))
            )
            assert [r.value for r in results] == [{"args": [i], "kwargs": {}} for i in range(5)]
            assert client.listener is None

    asyncio.run(calls())
    assert _listens(pg_dsn) == 0
