"""Enqueue in the caller's own transaction (issue 18): the message commits or rolls back with the
caller's rows, and the workers' wake-up NOTIFY is delivered by that very commit, directly and
through PgBouncer in transaction mode (no server-side prepared statements)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgqueue import Client, ClientSettings, Message, sqlfiles
from pgqueue.waking import channel_of
from tests.integration.test_pgbouncer import bouncer_dsn  # noqa: F401 - the PgBouncer fixture
from tests.support.workers import WorkerFactory

# A worker that polls this rarely can only pick a message up in time if the NOTIFY woke it.
IDLE_POLL = 60.0
WAKE_WITHIN = 15.0


def _messages(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pgqueue.message WHERE queue <> 'marker'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def wakeups(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session waiting for work as an idle worker does (wait_for_work, migration 0012): the
    next committed enqueue wakes it on its own channel."""
    me = {"worker_id": "test-waiter", "channel": channel_of("test-waiter")}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(me["channel"])))
        conn.execute(sqlfiles.query("wait_for_work"), {**me, "queues": ["default", "marker"]})
        yield conn


def _wakeups_until_marker(
    listener: psycopg.Connection[tuple[object, ...]], client: Client
) -> list[str]:
    """The wake-ups delivered up to a marker enqueued (and committed) now: NOTIFYs arrive in
    commit order, so one a rolled-back transaction had sent would come before the marker."""
    client.enqueue("demo.noop", queue="marker")
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while "marker" not in seen and time.monotonic() < deadline:
        seen += [n.payload for n in listener.notifies(timeout=1, stop_after=1)]
    assert "marker" in seen, seen
    return seen


def _app_table(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS app_order (id int PRIMARY KEY)")


def _rollback_leaves_nothing(
    caller_dsn: str, pg_dsn: str, client: Client, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    with psycopg.connect(caller_dsn, autocommit=True) as admin:
        _app_table(admin)
    # prepare_threshold=0 would prepare every statement on the server: pgqueue's must not be.
    with psycopg.connect(caller_dsn, prepare_threshold=0) as conn:
        for _ in range(3):  # repeated, so a prepared statement would be reused and fail
            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO app_order (id) VALUES (1)")
                client.enqueue("demo.noop", conn=conn)
                client.enqueue_many([Message("demo.noop"), Message("demo.add", [1, 2])], conn=conn)
                client.submit("demo.echo", ["x"], conn=conn)
                client.enqueue("demo.noop", conn=conn, unique_key="rolled-back")
    assert _messages(pg_dsn) == 0
    with psycopg.connect(pg_dsn) as check:
        assert check.execute("SELECT count(*) FROM app_order").fetchone() == (0,)
    assert _wakeups_until_marker(listener, client) == ["marker"]


def _commit_is_claimed_on_wakeup(
    caller_dsn: str, client: Client, workers: WorkerFactory, pg_dsn: str
) -> None:
    workers.start(pg_dsn, concurrency=2, extra=["--poll-interval", str(IDLE_POLL)])
    # Let the worker finish a first message: it then sleeps until a NOTIFY or the long poll.
    assert client.call("demo.echo", ["warm-up"], timeout=60).ok
    with psycopg.connect(caller_dsn, prepare_threshold=0) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO app_order (id) VALUES (2)")
            submitted = client.submit("demo.add", [2, 3], conn=conn)
            fire = client.enqueue("demo.noop", conn=conn)
            # Not visible before the commit, to workers or anyone else.
            assert _messages(pg_dsn) == 0
        committed = time.monotonic()
    result = client.result(submitted.reply_key, timeout=WAKE_WITHIN)
    assert result.ok and result.value == 5, result
    assert time.monotonic() - committed < WAKE_WITHIN < IDLE_POLL
    assert fire > 0 and submitted.created


def test_a_rolled_back_enqueue_leaves_no_message_and_wakes_no_worker(
    pg_dsn: str, wakeups: psycopg.Connection[tuple[object, ...]]
) -> None:
    with Client(pg_dsn) as client:
        _rollback_leaves_nothing(pg_dsn, pg_dsn, client, wakeups)


def test_a_committed_enqueue_is_claimed_within_the_wake_up_time(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with Client(pg_dsn) as client:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            _app_table(admin)
        _commit_is_claimed_on_wakeup(pg_dsn, client, workers, pg_dsn)


def test_the_same_through_pgbouncer_in_transaction_mode(
    pg_dsn: str,
    bouncer_dsn: str,  # noqa: F811
    workers: WorkerFactory,
    wakeups: psycopg.Connection[tuple[object, ...]],
) -> None:
    # The caller's own connection goes through the pooler; the client's pool too.
    with Client(bouncer_dsn, ClientSettings(pooled=True)) as client:
        _rollback_leaves_nothing(bouncer_dsn, pg_dsn, client, wakeups)
        _commit_is_claimed_on_wakeup(bouncer_dsn, client, workers, pg_dsn)


def test_an_autocommit_connection_commits_the_message_at_once(pg_dsn: str) -> None:
    with Client(pg_dsn) as client, psycopg.connect(pg_dsn, autocommit=True) as conn:
        ids = client.enqueue_many([Message("demo.noop")] * 3, conn=conn)
        assert len(ids) == 3
        assert _messages(pg_dsn) == 3


def test_conn_must_be_a_psycopg_connection(pg_dsn: str) -> None:
    from pgqueue import ConfigurationError

    with Client(pg_dsn) as client, pytest.raises(ConfigurationError, match="conn"):
        client.enqueue("demo.noop", conn=object())  # type: ignore[arg-type]
