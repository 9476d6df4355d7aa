"""Workers keep the queue tables vacuumed while traffic churns through them (--vacuum-interval)."""

from __future__ import annotations

import psycopg

from pgqueue import Client, Message
from tests.support import runs
from tests.support.workers import WorkerFactory, http_get, wait_until


def _vacuums(dsn: str, table: str) -> int:
    return int(
        runs.scalar(
            dsn,
            "SELECT vacuum_count FROM pg_stat_all_tables "
            "WHERE schemaname = 'pgqueue' AND relname = %s",
            (table,),
        )
    )


def test_a_worker_vacuums_the_queue_tables_while_traffic_churns(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    worker = workers.start(pg_dsn, extra=["--vacuum-interval", "0.5"])
    with Client(pg_dsn) as client:
        client.enqueue_many(Message("demo.noop") for _ in range(300))
        assert client.call("demo.echo", ["churn"], timeout=20).ok
    wait_until(
        lambda: _vacuums(pg_dsn, "message") >= 1 and _vacuums(pg_dsn, "result") >= 1,
        30,
        "the worker to vacuum pgqueue.message and pgqueue.result",
    )
    status, body = http_get(worker.url("/metrics"))
    assert status == 200
    counted = [line for line in body.splitlines() if line.startswith("pgqueue_vacuums_total ")]
    assert counted and float(counted[0].split()[1]) >= 1


def test_a_worker_that_may_not_vacuum_says_so_once_and_serves_on(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # An application role with the rights to use the queue, but not to own (vacuum) its tables.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgq_app') "
            "THEN CREATE ROLE pgq_app LOGIN; END IF; END $$"
        )
        conn.execute("GRANT USAGE ON SCHEMA pgqueue TO pgq_app")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgqueue TO pgq_app"
        )
        conn.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgqueue TO pgq_app")
    app_dsn = psycopg.conninfo.make_conninfo(pg_dsn, user="pgq_app")
    worker = workers.start(app_dsn, extra=["--vacuum-interval", "0.2"])
    wait_until(
        lambda: "not vacuuming the queue tables" in worker.log(),
        30,
        "the worker to say it may not vacuum",
    )
    with Client(pg_dsn) as client:
        result = client.call("demo.echo", ["still serving"], timeout=20)
    assert result.ok, result
    assert worker.log().count("not vacuuming the queue tables") == 1
    assert _vacuums(pg_dsn, "message") == 0
