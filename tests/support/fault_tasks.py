"""Tasks for the fault tier (tests/faults): hostile texts, a side-effect log kept outside
Postgres, and a task that spawns a grandchild.

The side-effect log is a file (``PGQUEUE_TEST_MARKS`` in the worker's environment) that each run
appends ``start``/``end`` lines to with O_APPEND: unlike a table, it is untouched by the
database faults under test (a crash, a read-only database, a partition), so it counts the runs
exactly.
"""

from __future__ import annotations

import os
import subprocess
import time

from pgqueue import task

# Texts Postgres cannot store as they are: a NUL, a lone surrogate (not encodable in UTF-8),
# and 1 MB (over the worker's error cap).
HOSTILE = {
    "nul": "before\x00after",
    "surrogate": "before\udc80after",
    "huge": "huge:" + "x" * 1_000_000,
}


def _mark(key: str, phase: str) -> None:
    line = f"{phase} {key} {os.getpid()}\n".encode()
    fd = os.open(os.environ["PGQUEUE_TEST_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@task(name="f.raise_text")
def raise_text(kind: str) -> None:
    raise ValueError(HOSTILE[kind])


@task(name="f.return_text")
def return_text(kind: str) -> str:
    return HOSTILE[kind]


@task(name="f.mark")
def mark(key: str, seconds: float = 0.0) -> str:
    """Log the start, take a while, log the end: one 'start' line per run of the key."""
    _mark(key, "start")
    if seconds:
        time.sleep(seconds)
    _mark(key, "end")
    return key


@task(name="f.spawn_and_hang")
def spawn_and_hang(key: str) -> None:
    """Spawn a grandchild that outlives us unless our whole process group dies, then hang."""
    child = subprocess.Popen(["sleep", "600"])
    _mark(key, f"child:{child.pid}")
    time.sleep(600)


@task(name="f.echo")
def echo(value: str) -> str:
    return value
