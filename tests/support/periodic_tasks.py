"""A periodic task for the integration tests: every second, it records its tick in
``periodic_runs`` of the worker's database (start, then end a second later), so a test can count
the runs of each tick and see one interrupted by a killed worker. The test creates the table
(tests/integration/test_periodic.py: RUNS_DDL) and never imports this module: importing it
registers the schedule in the importing process."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

from pgqueue import periodic

RUN_SECONDS = 1.0

_conn: psycopg.Connection[Any] | None = None


def _record(tick: str, phase: str) -> None:
    global _conn  # noqa: PLW0603 - one connection per slot process
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["PGQUEUE_DSN"], autocommit=True, prepare_threshold=None)
    _conn.execute(
        "INSERT INTO periodic_runs (tick, phase, pid) VALUES (%s, %s, %s)",
        (tick, phase, os.getpid()),
    )


@periodic(
    "* * * * * *", tz="Europe/Paris", name="p.every_second", queue="periodic", tick_kwarg="tick"
)
def every_second(tick: str) -> str:
    _record(tick, "start")
    time.sleep(RUN_SECONDS)
    _record(tick, "end")
    return tick
