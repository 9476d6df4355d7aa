"""The legacy Celery app of the gate tests: the same functions as gate_tasks, as Celery tasks
with the same names (JSON serialisation, Redis broker and result backend from the env)."""

from __future__ import annotations

import os

from celery import Celery

from tests.support import gate_tasks

BROKER_ENV = "PGQUEUE_TEST_CELERY_BROKER"


def make_app(broker: str) -> Celery:
    app = Celery("legacy", broker=broker, backend=broker)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    for func in (gate_tasks.add, gate_tasks.tagged, gate_tasks.explode):
        app.task(name=f"gate.{func.__name__}")(func)
    return app


app = make_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
