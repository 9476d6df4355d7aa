"""Tasks for the core integration tests; each records its runs in ``test_runs`` of the same
database (the worker's PGQUEUE_DSN), so a test can count executions and see their order."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

from pgqueue import task

_conn: psycopg.Connection[Any] | None = None

DDL = """
CREATE TABLE IF NOT EXISTS test_runs (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    phase text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def task_db() -> psycopg.Connection[Any]:
    global _conn  # noqa: PLW0603 - one connection per slot process
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["PGQUEUE_DSN"], autocommit=True, prepare_threshold=None)
    return _conn


def record_phase(key: str, phase: str) -> None:
    for attempt in range(50):
        try:
            task_db().execute(
                "INSERT INTO test_runs (key, phase, pid) VALUES (%s, %s, %s)",
                (key, phase, os.getpid()),
            )
            return
        except psycopg.OperationalError:
            # The restart test takes Postgres away under us; a real task would retry too.
            global _conn  # noqa: PLW0603
            _conn = None
            time.sleep(0.1 * (attempt + 1))
    raise RuntimeError("could not record the run")


@task(name="t.record")
def record(key: str, seconds: float = 0.0) -> str:
    """Record start, optionally take a while, record the end."""
    record_phase(key, "start")
    if seconds:
        time.sleep(seconds)
    record_phase(key, "end")
    return key


@task(name="t.fail_record")
def fail_record(key: str) -> None:
    record_phase(key, "start")
    raise RuntimeError(f"failing on purpose for {key}")


@task(name="t.return_none")
def return_none() -> None:
    return None


@task(name="t.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(name="t.pid")
def pid() -> int:
    return os.getpid()


@task(name="t.stubborn_sleep")
def stubborn_sleep(seconds: float) -> str:
    """Swallows every Exception, as careless task code does: a time limit must still stop it."""
    try:
        time.sleep(seconds)
    except Exception:
        return "swallowed"
    return "slept"
