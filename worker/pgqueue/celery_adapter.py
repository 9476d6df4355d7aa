"""The legacy route: Celery behind the ``call``/``enqueue`` surface (extra ``pgqueue[celery]``).

With the gate off, a call is exactly the ``send_task(...).get(timeout)`` the application made
before the migration — same task name, arguments, queue and result backend — only its outcome is
mapped onto :class:`pgqueue.CallResult` so the caller's code does not change with the route.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pgqueue import metrics
from pgqueue.replies import CallResult


class CeleryDispatcher:
    """``call`` and ``enqueue`` over a Celery app."""

    def __init__(self, app: Any, *, default_timeout: float = 30.0) -> None:
        self.app = app
        self.default_timeout = default_timeout

    def _send(
        self, task: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None, queue: str | None
    ) -> Any:
        options: dict[str, Any] = {}
        if queue is not None:
            options["queue"] = queue
        return self.app.send_task(task, args=list(args), kwargs=dict(kwargs or {}), **options)

    def call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: PLC0415

        started = time.monotonic()
        wait = self.default_timeout if timeout is None else timeout
        try:
            async_result = self._send(task, args, kwargs, queue)
        except Exception as exc:
            result = CallResult.failure("", "enqueue_error", f"{type(exc).__name__}: {exc}")
        else:
            key = str(async_result.id)
            try:
                value = async_result.get(timeout=wait)
            except CeleryTimeout:
                result = CallResult.failure(key, "timeout", f"no reply within {wait:g}s")
            except Exception as exc:
                result = CallResult.failure(key, "task_error", f"{type(exc).__name__}: {exc}")
            else:
                result = CallResult.success(key, value)
        metrics.CALL_DURATION.labels(task, result.kind).observe(time.monotonic() - started)
        return result

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
    ) -> str:
        """Send without waiting; returns the Celery task id."""
        return str(self._send(task, args, kwargs, queue).id)
