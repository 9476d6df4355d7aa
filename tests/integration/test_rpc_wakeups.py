"""How a caller waits for its reply: NOTIFY when it can listen, polls as the safety net (§4)."""

from __future__ import annotations

import psycopg
import pytest

from pgqueue import Client
from pgqueue.settings import ClientSettings
from tests.support.workers import WorkerFactory, wait_until


def _take_reply_statements(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query LIKE 'DELETE FROM pgqueue.result%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _reset_statements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def _listening(client: Client) -> bool:
    listener = client._listener
    return listener is not None and listener.live


def test_a_listening_caller_reads_its_reply_once_per_call(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    # poll_max far above a call's duration: any extra read would be a wasted poll, not the net.
    settings = ClientSettings(dsn=pg_dsn, poll_max=10.0)
    with Client(settings=settings) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        _reset_statements(pg_dsn)
        for i in range(20):
            result = client.call("demo.echo", [i], timeout=20)
            assert result.ok, result
            assert result.value == {"args": [i], "kwargs": {}}
        assert _take_reply_statements(pg_dsn) == 20


def test_a_worker_that_does_not_notify_is_caught_by_the_safety_net_poll(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1, env={"PGQUEUE_NOTIFY": "false"})
    settings = ClientSettings(dsn=pg_dsn, poll_max=0.05)
    with Client(settings=settings) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        result = client.call("demo.echo", ["no-notify"], timeout=20)
        assert result.ok, result
        assert result.value == {"args": ["no-notify"], "kwargs": {}}


@pytest.mark.parametrize("pooled", [False, True])
def test_a_call_that_gets_no_reply_times_out_after_a_last_look(pg_dsn: str, pooled: bool) -> None:
    # No worker: the caller must give up at its timeout, having polled at least once.
    settings = ClientSettings(dsn=pg_dsn, poll_max=0.2, pooled=pooled)
    with Client(settings=settings) as client:
        if not pooled:
            assert client.call("demo.echo", timeout=0.3).kind == "timeout"
            wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        result = client.call("demo.echo", timeout=0.5)
    assert result.kind == "timeout"
    assert "no reply within 0.5s" in result.error
    assert "(0 polls)" not in result.error


def test_a_reply_wakes_only_the_client_that_waits_for_it(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    with Client(pg_dsn) as caller, Client(pg_dsn) as bystander:
        for client in (caller, bystander):
            assert client.call("demo.echo", ["warm-up"], timeout=20).ok
            wait_until(lambda c=client: _listening(c), 10, "the reply listener to be in place")
        assert caller._listener is not None and bystander._listener is not None
        before = bystander._listener.delivered, caller._listener.delivered
        for i in range(20):
            assert caller.call("demo.echo", [i], timeout=20).ok
        # Each reply was notified on the caller's own channel: the other process slept.
        assert caller._listener.delivered - before[1] == 20
        assert bystander._listener.delivered == before[0]
