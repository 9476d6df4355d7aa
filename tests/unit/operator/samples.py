"""The smallest valid PgQueueWorker, as a spec and as an object, for the unit tests to vary."""

from __future__ import annotations

from typing import Any

MINIMAL_SPEC: dict[str, Any] = {
    "image": "worker:dev",
    "queues": ["default"],
    "tasks": ["app.tasks"],
    "database": {"secretName": "db"},
    "taskTimeLimitSeconds": 300,
}


def body(**spec: Any) -> dict[str, Any]:
    """A PgQueueWorker ``ns/w`` (generation 4): :data:`MINIMAL_SPEC` updated with ``spec``."""
    return {
        "apiVersion": "pgqueue.dev/v1alpha1",
        "kind": "PgQueueWorker",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "generation": 4},
        "spec": {**MINIMAL_SPEC, **spec},
    }
