"""The legacy route: Celery behind the ``call``/``enqueue`` surface (extra ``pgqueue[celery]``).

With the gate off, a call is exactly the ``send_task(...).get(timeout)`` the application made
before the migration — same task name, arguments, queue and result backend — only its outcome is
mapped onto :class:`pgqueue.CallResult` so the caller's code does not change with the route:

- the task raised → ``task_error``, error ``"<ExceptionType>: <message>"`` (as on Postgres);
- the task was revoked (``revoke()``, ``terminate=True`` or not) → ``cancelled``, as a call
  cancelled on Postgres;
- no reply within the timeout → ``timeout``; waiting failed (result backend unreachable) →
  ``timeout`` too, with the cause in ``error``: the task was sent and may still run;
- ``send_task`` failed (broker unreachable) → ``enqueue_error``: nothing was sent.

Options are passed on only when given: ``queue`` → ``queue``, ``priority`` → ``priority`` (on the
broker's own scale, not translated), ``delay`` → ``countdown``; ``cancel_on_timeout`` revokes a
task that timed out (``terminate=True``); ``tenant`` has no Celery equivalent and is ignored.
``send_options`` (constructor) are added to every ``send_task``, for options the application
passed before (``routing_key``, ``expires`` ...).

How long a failing broker or result backend takes to fail is Celery's own configuration
(``task_publish_retry_policy``, ``result_backend_transport_options["retry_policy"]``): the legacy
route behaves as it did before the migration, including its stalls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pgqueue import metrics
from pgqueue.replies import CallResult

if TYPE_CHECKING:
    from pgqueue.routing import Dispatcher


def _describe(exc: BaseException) -> str:
    """``"<Type>: <message>"`` on one line (Celery's and redis' messages span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class CeleryDispatcher:
    """``call`` and ``enqueue`` over a Celery app (``app.send_task``)."""

    def __init__(
        self,
        app: Any,
        *,
        default_timeout: float = 30.0,
        send_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.default_timeout = default_timeout
        self.send_options = dict(send_options or {})

    def _send(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        queue: str | None,
        priority: int | None,
        delay: float | None,
    ) -> Any:
        options = dict(self.send_options)
        if queue is not None:
            options["queue"] = queue
        if priority is not None:
            options["priority"] = priority
        if delay:
            options["countdown"] = delay
        return self.app.send_task(task, args=list(args), kwargs=dict(kwargs or {}), **options)

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        tenant: str | None = None,  # ignored: no Celery equivalent
        cancel_on_timeout: bool | None = None,
    ) -> CallResult:
        """Send the task and wait for its result; never raises for transport or task errors.

        ``cancel_on_timeout=True``: a task still running when the timeout passes is revoked with
        ``terminate=True`` (what a Celery caller does by hand), best effort."""
        from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: PLC0415

        started = time.monotonic()
        wait = self.default_timeout if timeout is None else timeout
        try:
            async_result = self._send(task, args, kwargs, queue, priority, None)
        except Exception as exc:
            result = CallResult.failure("", "enqueue_error", _describe(exc))
        else:
            key = str(async_result.id)
            try:
                value = async_result.get(timeout=wait, propagate=False)
                succeeded = bool(async_result.successful())
            except CeleryTimeout:
                result = CallResult.failure(key, "timeout", f"no reply within {wait:g}s")
                if cancel_on_timeout:
                    with contextlib.suppress(Exception):  # the broker may be the reason
                        async_result.revoke(terminate=True)
            except Exception as exc:
                result = CallResult.failure(
                    key, "timeout", f"waiting for the reply failed: {_describe(exc)}"
                )
            else:
                if succeeded:
                    result = CallResult.success(key, value)
                elif async_result.state == "REVOKED":
                    # revoke(), with or without terminate=True: pgqueue's cancel.
                    why = _describe(value) if isinstance(value, BaseException) else "revoked"
                    result = CallResult.failure(key, "cancelled", why)
                elif isinstance(value, BaseException):
                    result = CallResult.failure(key, "task_error", _describe(value))
                else:
                    state = async_result.state
                    result = CallResult.failure(key, "task_error", f"task ended in state {state}")
        metrics.CALL_DURATION.labels(task, result.kind).observe(time.monotonic() - started)
        return result

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        tenant: str | None = None,  # ignored: no Celery equivalent
        delay: float | None = None,
    ) -> str:
        """Send without waiting; returns the Celery task id. Raises what ``send_task`` raises."""
        return str(self._send(task, args, kwargs, queue, priority, delay).id)


if TYPE_CHECKING:

    def _is_a_dispatcher(celery: CeleryDispatcher) -> Dispatcher:
        return celery  # mypy checks the adapter against the protocol here
