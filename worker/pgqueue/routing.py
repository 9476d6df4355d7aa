"""The routing dispatcher: the same ``call``/``enqueue`` surface as :class:`pgqueue.Client`, sent to
Postgres or to the legacy transport by the gate, decided per call.

Application code holds one dispatcher and never changes with the route; a flip of the flag (or the
kill-switch) moves every caller within the gate's TTL, and back just as fast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pgqueue.gating import Gate
from pgqueue.replies import CallResult

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """What the routing dispatcher needs of each route (Client and CeleryDispatcher fit)."""

    def call(
        self,
        task: str,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        *,
        queue: str = ...,
        timeout: float | None = ...,
    ) -> CallResult: ...

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        *,
        queue: str = ...,
    ) -> Any: ...


class RoutingDispatcher:
    """Send each call to ``pg`` when the gate is on, to ``fallback`` otherwise."""

    def __init__(self, pg: Dispatcher, fallback: Dispatcher, gate: Gate) -> None:
        self.pg = pg
        self.fallback = fallback
        self.gate = gate

    def _route(self, verb: str, task: str) -> Dispatcher:
        decision = self.gate.decide()
        log.debug("gate: %s %s -> %s (%s)", verb, task, decision.route, decision.reason)
        return self.pg if decision.to_pg else self.fallback

    def call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        """Run a task on the current route and wait for it; never raises for task errors."""
        route = self._route("call", task)
        if queue is None:
            return route.call(task, args, kwargs, timeout=timeout)
        return route.call(task, args, kwargs, queue=queue, timeout=timeout)

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
    ) -> Any:
        """Fire and forget on the current route: a msg_id (Postgres) or a Celery task id."""
        route = self._route("enqueue", task)
        if queue is None:
            return route.enqueue(task, args, kwargs)
        return route.enqueue(task, args, kwargs, queue=queue)
