"""Reading what the recording tasks of core_tasks wrote."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.core_tasks import DDL
from tests.support.workers import wait_until


def create_runs_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    rows = query(dsn, sql, params)
    return rows[0][0] if rows else None


def wait_replies_taken(dsn: str, timeout: float = 10.0) -> None:
    """Every stored reply was taken: a reply that came in its NOTIFY is deleted by the caller's
    listener in the background (within a fraction of a second), so this waits for it."""
    wait_until(
        lambda: scalar(dsn, "SELECT count(*) FROM pgqueue.result") == 0,
        timeout,
        "the taken replies to be deleted",
    )


def wait_queue_empty(dsn: str, timeout: float, what: str) -> None:
    """Every message was run and settled: the message table is empty."""
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgqueue.message") == 0, timeout, what)
