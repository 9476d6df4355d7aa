"""The routing dispatcher: the same ``call``/``enqueue`` surface as :class:`pgqueue.Client`, sent to
Postgres or to the legacy transport by the gate, decided per call.

Application code holds one dispatcher and never changes with the route; a flip of the flag (or the
kill-switch) moves every caller within the gate's TTL, and back just as fast. Options the caller
leaves out are not passed on, so each route applies its own defaults: a call routed to Celery is
the very ``send_task`` the application made before (its queue comes from Celery's routing, not
from pgqueue's ``"default"``).

``enqueue`` returns the route's own id: a Postgres ``msg_id`` (int) or a Celery task id (str).
Ids are only meaningful to the system that issued them; the type tells which one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pgqueue.gating import Gate
from pgqueue.replies import CallResult

if TYPE_CHECKING:
    from pgqueue.client import Client

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """What the routing dispatcher needs of each route (Client and CeleryDispatcher fit)."""

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def call(
        self,
        task: str,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        *,
        queue: str = ...,
        timeout: float | None = ...,
        priority: int = ...,
        tenant: str = ...,
        cancel_on_timeout: bool | None = ...,
    ) -> CallResult: ...

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        *,
        queue: str = ...,
        priority: int = ...,
        tenant: str = ...,
        delay: float = ...,
    ) -> int | str: ...


if TYPE_CHECKING:

    def _client_is_a_dispatcher(client: Client) -> Dispatcher:
        return client  # mypy checks the Client against the protocol here


def _given(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


class RoutingDispatcher:
    """Send each call to ``pg`` when the gate is on, to ``fallback`` otherwise.

    Every decision is logged at DEBUG and counted in ``pgqueue_gate_decisions_total``; a call
    goes to exactly one route and is never retried on the other.
    """

    def __init__(self, pg: Dispatcher, fallback: Dispatcher, gate: Gate) -> None:
        self.pg = pg
        self.fallback = fallback
        self.gate = gate

    def _route(self, verb: str, task: str) -> Dispatcher:
        decision = self.gate.decide()
        log.debug("gate: %s %s -> %s (%s)", verb, task, decision.route, decision.reason)
        return self.pg if decision.to_pg else self.fallback

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
        tenant: str | None = None,
        cancel_on_timeout: bool | None = None,
    ) -> CallResult:
        """Run a task on the current route and wait for it; never raises for task errors.

        ``cancel_on_timeout=True``: a run still going when the timeout passes is stopped (on
        Postgres its worker kills it; on Celery it is revoked with ``terminate=True``)."""
        route = self._route("call", task)
        options = _given(
            queue=queue, priority=priority, tenant=tenant, cancel_on_timeout=cancel_on_timeout
        )
        return route.call(task, args, kwargs, timeout=timeout, **options)

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        tenant: str | None = None,
        delay: float | None = None,
    ) -> int | str:
        """Fire and forget on the current route: a msg_id (Postgres) or a Celery task id."""
        route = self._route("enqueue", task)
        options = _given(queue=queue, priority=priority, tenant=tenant, delay=delay)
        return route.enqueue(task, args, kwargs, **options)
