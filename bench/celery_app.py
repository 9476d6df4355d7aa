"""The Celery side of the comparison: one no-op task, Redis broker and result backend, JSON.

The broker URL comes from ``PGQUEUE_BENCH_REDIS_URL`` (the run's private redis-server), so the
same module serves the worker subprocess (``celery -A bench.celery_app worker``) and the
callers. Everything else is Celery's default, as a team migrating from it would have it.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("PGQUEUE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("pgqueue_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: measures the transport."""


@app.task(name="bench.echo")
def echo(token: int) -> int:
    """Returns its argument: the throughput callers check each reply is their own."""
    return token
