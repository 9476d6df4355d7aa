"""The application's legacy Celery app: the same task names and functions as ``pgqueue.demo_tasks``.

The Celery worker of the story runs ``celery -A devtools.legacy_app worker`` (broker from
``PGQUEUE_E2E_CELERY_BROKER``); the application builds its own handle with :func:`make_app`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from pgqueue import demo_tasks

BROKER_ENV = "PGQUEUE_E2E_CELERY_BROKER"


def make_app(broker: str) -> Celery:
    app = Celery("pgqueue-e2e-legacy", broker=broker, backend=broker)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        result_expires=3600,
    )

    @app.task(name="demo.echo")
    def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return demo_tasks.echo(*args, **kwargs)

    @app.task(name="demo.add")
    def add(a: float, b: float) -> float:
        return demo_tasks.add(a, b)

    @app.task(name="demo.sleep")
    def sleep(seconds: float) -> float:
        return demo_tasks.sleep(seconds)

    return app


app = make_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
