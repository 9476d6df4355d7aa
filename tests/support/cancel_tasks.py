"""Tasks for the cancellation tests (issue 19): each run records what it did in a probe table, so a
test can see a run start (its pid and the pid of a child process it spawned), and see that a run
that was killed never reached its end."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg

import pgqueue

DDL = """
CREATE TABLE IF NOT EXISTS cancel_probe (
    tag        text NOT NULL,
    event      text NOT NULL,
    msg_id     bigint,
    pid        integer,
    child_pid  integer,
    at         timestamptz NOT NULL DEFAULT now()
)
"""


def _record(
    dsn: str, tag: str, event: str, pid: int | None = None, child: int | None = None
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO cancel_probe (tag, event, msg_id, pid, child_pid) "
            "VALUES (%s, %s, %s, %s, %s)",
            (tag, event, pgqueue.current().msg_id, pid, child),
        )


def _work(dsn: str, tag: str, seconds: float) -> str:
    """Record the start (with a child process of its own), work, then record the end."""
    child = subprocess.Popen(["sleep", "300"])  # a grandchild of the worker: must die with the run
    _record(dsn, tag, "started", os.getpid(), child.pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    child.kill()
    child.wait()
    _record(dsn, tag, "finished")
    return tag


@pgqueue.task(name="cancel.work")
def work(dsn: str, tag: str, seconds: float) -> str:
    return _work(dsn, tag, seconds)


@pgqueue.task(name="cancel.work_or_stop", cancel_on_timeout=True)
def work_or_stop(dsn: str, tag: str, seconds: float) -> str:
    """The same work, registered with cancel_on_timeout: stopped when its caller gives up."""
    return _work(dsn, tag, seconds)


@pgqueue.task(name="cancel.echo")
def echo(value: str) -> str:
    return value
