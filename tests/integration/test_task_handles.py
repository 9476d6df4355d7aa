"""Task handles against a real worker (issue 18): typed call, delay and submit, through a bound
client or the default one that pgqueue.configure sets."""

from __future__ import annotations

import psycopg

import pgqueue
from pgqueue import Client
from pgqueue.demo_tasks import add, echo
from tests.support.workers import WorkerFactory


def test_call_delay_and_submit_through_a_bound_client(pg_dsn: str, workers: WorkerFactory) -> None:
    workers.start(pg_dsn, concurrency=2)
    with Client(pg_dsn) as client:
        remote = add.using(client)
        assert remote.call(2, 3).value == 5
        assert remote.submit(4, b=5).result(60).value == 9
        echoed = echo.using(client, timeout=60).call("a", k=1)
        assert echoed.value == {"args": ["a"], "kwargs": {"k": 1}}, echoed
        msg_id = remote.delay(1, 1)
        assert msg_id > 0


def test_the_default_client_comes_from_configure(pg_dsn: str, workers: WorkerFactory) -> None:
    workers.start(pg_dsn, concurrency=1)
    client = pgqueue.configure(pg_dsn)
    try:
        assert add.call(20, 22).value == 42
        # In the caller's transaction, through the same handle: rolled back, nothing is queued.
        with psycopg.connect(pg_dsn) as conn:
            with conn.transaction(force_rollback=True):
                add.using(conn=conn).delay(1, 2)
            assert conn.execute("SELECT count(*) FROM pgqueue.message").fetchone() == (0,)
        # A call cannot wait inside an uncommitted transaction: it says so instead of hanging.
        with psycopg.connect(pg_dsn) as conn:
            refused = add.using(conn=conn).call(1, 2)
        assert refused.kind == "enqueue_error" and "submit()" in refused.error
    finally:
        client.close()
