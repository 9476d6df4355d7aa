"""Fault matrix: a full NOTIFY queue, held by a listener that stopped reading.

Postgres keeps every notification until the slowest listening session has read it; a session
that LISTENs and then sits in an open transaction holds them all, and once the queue is full
every transaction that NOTIFYs fails at commit. Enqueue and call NOTIFY as a wake-up only
(polling is the correctness path), so they must keep working: the wake-up is skipped while the
queue is over half full. A separate server with the smallest queue (max_notify_queue_pages,
Postgres 17+) makes the queue fill in a few hundred kilobytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgqueue import Client, ClientSettings
from pgqueue.embedded import EmbeddedPostgres
from pgqueue.migrating import migrate
from tests.support.workers import WorkerFactory


@pytest.fixture
def small_queue_dsn() -> Iterator[str]:
    server = EmbeddedPostgres(settings={"max_notify_queue_pages": "64"}).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) >= 170000, "needs Postgres 17+"
            conn.execute("CREATE DATABASE notify_full")
        dsn = server.dsn_for("notify_full")
        migrate(dsn)
        yield dsn
    finally:
        server.cleanup()


def _usage(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    row = conn.execute("SELECT pg_notification_queue_usage()").fetchone()
    assert row is not None
    return float(str(row[0]))


def test_enqueue_and_call_work_with_the_notify_queue_full(
    small_queue_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(small_queue_dsn, concurrency=1)
    with (
        psycopg.connect(small_queue_dsn, autocommit=True) as stalled,
        psycopg.connect(small_queue_dsn, autocommit=True) as filler,
        Client(settings=ClientSettings(dsn=small_queue_dsn, poll_max=0.05)) as client,
    ):
        assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        # The stalled listener: LISTENs, then holds a transaction open and never reads.
        stalled.execute("LISTEN anything")
        stalled.execute("BEGIN")
        stalled.execute("SELECT 1")
        refusal = ""
        for _ in range(1000):
            try:
                filler.execute("SELECT pg_notify('filler', repeat('x', 7000))")
            except psycopg.Error as exc:
                refusal = str(exc)
                break
        assert "too many notifications" in refusal, f"queue not full ({_usage(filler):.2f})"
        assert _usage(filler) > 0.5

        msg_id = client.enqueue("demo.echo", ["fire-and-forget"])
        assert msg_id > 0
        result = client.call("demo.echo", ["while full"], timeout=30)
        assert result.ok, result
        assert result.value == {"args": ["while full"], "kwargs": {}}
        stalled.execute("ROLLBACK")
