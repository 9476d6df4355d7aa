"""The producer side: ``enqueue`` (fire and forget) and ``call`` (blocking request-reply).

``call`` enqueues with a fresh reply key and the caller's deadline, then waits for the reply row:
polls with a fast-then-capped backoff clamped to the deadline, taking a pooled connection only
for each poll. On a direct connection a listener thread (:mod:`pgqueue.listening`) may wake it
early on the reply's NOTIFY, which carries a small reply itself on the client's private channel
(the row is then cleared in the background); polling stays the correctness path, so a lost
notification costs latency, never a result.

``enqueue``, ``enqueue_many`` and ``submit`` take ``conn=``, the caller's own psycopg connection:
the message is then part of the caller's transaction (committed or rolled back with it, the
workers woken by that commit). ``submit`` returns at once with the reply key; ``result`` collects
the reply later, from any process. A ``unique_key`` keeps one message per key while it waits or
runs (and ``unique_for`` seconds from its enqueue); a second enqueue returns the first one's id,
and a call attaches to the first one's reply.

Every wait for the server inside ``call`` is bounded by the caller's deadline (plus
``CALL_MARGIN``, 0.25 s), whatever the network or the backend does; a pooled connection that died
while idle is replaced on checkout, and a statement that failed before reaching the server is
retried once on a fresh connection.

Every public verb of :class:`Client` is defined here. The machinery under them, one module each:
:mod:`pgqueue.clientpool` (the pool, checkout and retry, the reply listener),
:mod:`pgqueue.enqueuing` (the insert path), :mod:`pgqueue.replywaiting` (the wait for a reply).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import arguments, cancelling, db, metrics, pausing, producing, store
from pgqueue.cancelling import Cancellation
from pgqueue.clientpool import Conn
from pgqueue.errors import ConfigurationError, EnqueueError
from pgqueue.listening import ReplyListener
from pgqueue.pausing import QueuePause
from pgqueue.producing import Message, TaskOptions
from pgqueue.replies import CallResult
from pgqueue.replywaiting import CALL_GRACE, ReplyWaiting
from pgqueue.store import calls

log = logging.getLogger(__name__)

CALL_MARGIN = 0.25  # documented bound: call(timeout=T) returns within T + CALL_MARGIN


# Message and TaskOptions live in pgqueue.producing (shared with the asyncio client).
__all__ = [
    "CALL_GRACE",
    "CALL_MARGIN",
    "Client",
    "Message",
    "Submitted",
    "TaskOptions",
]


def unexpected(logger: logging.Logger, scrub: Callable[[str], str], exc: Exception) -> CallResult:
    """A call that failed as it never should (``call`` never raises): logged, and an
    ``enqueue_error`` result naming the error without the DSN's secrets."""
    error = scrub(f"{type(exc).__name__}: {exc}")
    logger.error("call failed unexpectedly: %s", error)
    return CallResult.failure("", "enqueue_error", error)


def observed(task: object, started: float, result: CallResult) -> CallResult:
    """A call's result, its duration observed under the task's name (``<invalid>``: a bad one).

    Only an ``enqueue_error`` can come from a bad name: any other result had its name checked
    when its message was built, so the check runs again only then.
    """
    valid = isinstance(task, str) and (result.kind != "enqueue_error" or arguments.valid_task(task))
    label = task if valid else "<invalid>"
    metrics.CALL_DURATION.labels(label, result.kind).observe(time.monotonic() - started)
    return result


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted message whose reply is collected later (:meth:`Client.submit`).

    ``reply_key`` is all another process needs: ``Client.result(reply_key, timeout)``. ``created``
    is false when a unique key attached this submit to a message already queued or running.
    """

    reply_key: str
    msg_id: int
    created: bool
    client: Client = field(repr=False, compare=False)

    def result(self, timeout: float | None = None) -> CallResult:
        """Wait for the reply (at most ``timeout`` seconds, default the client's); never raises."""
        return self.client.result(self.reply_key, timeout)

    def cancel(self) -> Cancellation:
        """Cancel the message (see :meth:`Client.cancel`); a unique submit attached to another
        message cancels that message, for every caller attached to it."""
        return self.client.cancel(self.msg_id)


class Client(ReplyWaiting):
    """Enqueue tasks and call them; safe to share between threads."""

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 5,
        tenant: str = "",
        delay: float = 0.0,
        options: TaskOptions | None = None,
        unique_key: str | None = None,
        unique_for: float = 0.0,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Put one message on a queue; returns its msg_id.

        ``conn``: the caller's psycopg connection; the message joins its open transaction (or
        commits at once in autocommit). ``unique_key``: while a message with that key waits or
        runs (and ``unique_for`` seconds from its enqueue), no other is queued: this returns the
        holder's msg_id. ``options``: per-task limits carried by the message.

        Raises :class:`~pgqueue.errors.ConfigurationError` naming a bad argument, and
        :class:`~pgqueue.errors.EnqueueError` when the database did not take the message.
        """
        params = self._params(
            task,
            args,
            kwargs,
            queue,
            priority,
            tenant,
            delay,
            None,
            None,
            options=options,
            unique_key=unique_key,
            unique_for=unique_for,
            own_transaction=conn is not None,
        )
        return int(self._insert(params, None, conn)["msg_id"])

    def enqueue_many(
        self, messages: Iterable[Message], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """Put a batch of messages on their queues in one statement; returns their msg_ids.

        ``conn``: the caller's psycopg connection, as for :meth:`enqueue`.
        """
        batch = list(messages)
        params = producing.batch_params(self.settings, batch)
        if not batch:
            return []
        statement = calls.enqueue_many(params)

        def insert(conn: Conn) -> list[int]:
            return [int(r["msg_id"]) for r in store.every(conn, statement)]

        try:
            if conn is not None:
                return [int(r["msg_id"]) for r in producing.execute_on(conn, statement)]
            return self._run(insert, None, "enqueue_many")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(self._scrub(f"enqueue_many failed: {exc}")) from None

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def submit(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 5,
        tenant: str = "",
        delay: float = 0.0,
        deadline: float | None = None,
        options: TaskOptions | None = None,
        unique_key: str | None = None,
        unique_for: float = 0.0,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Submitted:
        """Put a message on a queue with a reply key and return at once: collect the reply
        later with :meth:`Submitted.result` or, from any process, :meth:`result`.

        ``deadline``: seconds from now after which the task must not start (the worker
        dead-letters it and stores a failed reply); ``None``: no deadline. The reply is kept for
        the workers' ``result_ttl``. With a ``unique_key`` held by a message queued or running,
        this attaches to that message's reply (``created`` false). Raises like :meth:`enqueue`.
        """
        key = self._reply_key(shared=unique_key is not None)
        wait = None if deadline is None else arguments.seconds("deadline", deadline, positive=True)
        params = self._params(
            task,
            args,
            kwargs,
            queue,
            priority,
            tenant,
            delay,
            key,
            wait,
            options=options,
            unique_key=unique_key,
            unique_for=unique_for,
            own_transaction=conn is not None,
        )
        # Durable at once, unlike a call's message: nobody is waiting to notice that a crash
        # lost it, so a submit that returned is a message that survives one.
        params["async_commit"] = False
        row = self._insert(params, None, conn)
        return Submitted(
            self._attached_key(row, key, unique_key),
            int(row["msg_id"]),
            bool(row.get("created", True)),
            self,
        )

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        timeout: float | None = None,
        priority: int = 5,
        tenant: str = "",
        options: TaskOptions | None = None,
        unique_key: str | None = None,
        unique_for: float = 0.0,
        cancel_on_timeout: bool | None = None,
    ) -> CallResult:
        """Run a task and wait for its reply; never raises, whatever the arguments or the network.

        Returns within ``timeout`` + ``CALL_MARGIN`` (0.25 s). A bad argument is an
        ``enqueue_error`` result whose error names it. With a ``unique_key`` held by a call
        queued or running, this waits for that call's reply instead of running the task twice.
        ``cancel_on_timeout=True``: if the timeout passes while the task runs, its worker kills
        the run (default: it runs to completion, the reply is swept later).
        """
        started = time.monotonic()
        try:
            options = producing.with_cancel_on_timeout(options, cancel_on_timeout)
            result = self._call(
                task,
                args,
                kwargs,
                queue,
                timeout,
                priority,
                tenant,
                started,
                {"options": options, "unique_key": unique_key, "unique_for": unique_for},
            )
        except Exception as exc:
            result = unexpected(log, self._scrub, exc)
        return observed(task, started, result)

    def result(self, reply_key: str, timeout: float | None = None) -> CallResult:
        """Wait for the reply stored under a reply key (a :meth:`submit`'s, from any process).

        A reply already stored returns at once. A key submitted by another Client is notified on
        that client's channel: this wait then finds the reply by its safety-net poll (every
        poll_max) rather than at once. Never raises: a bad key or timeout is an
        ``enqueue_error`` result naming it; returns within ``timeout`` + ``CALL_MARGIN``.
        """
        try:
            key = arguments.check_reply_key(reply_key)
            wait = (
                self.settings.default_timeout
                if timeout is None
                else arguments.seconds("timeout", timeout, positive=True)
            )
        except ConfigurationError as exc:
            return CallResult.failure(str(reply_key)[:255], "enqueue_error", str(exc))
        try:
            listener = self._reply_listener()
            waiter = listener.register(key) if listener else None
            deadline = time.monotonic() + wait
            try:
                with db.deadline(deadline + CALL_GRACE):
                    return self._wait(key, deadline, wait, waiter, poll_first=True)
            finally:
                if listener:
                    listener.unregister(key, waiter)
        except Exception as exc:
            error = self._scrub(f"{type(exc).__name__}: {exc}")
            log.error("result() failed unexpectedly: %s", error)
            return CallResult.failure(key, "enqueue_error", error)

    def wait_for_reply(self, reply_key: str, timeout: float) -> CallResult:
        """The same as :meth:`result` (its earlier name)."""
        return self.result(reply_key, timeout)

    def connection(self) -> contextlib.AbstractContextManager[Conn]:
        """A connection of this client's pool for statements of your own (autocommit, dict
        rows), returned to the pool on exit; e.g. ``enqueue(..., conn=)`` in a transaction."""
        return self._pool.connection()

    def cancel(self, target: int | str, *, by: str | None = None) -> Cancellation:
        """Cancel a message by msg_id (int) or reply key (str).

        Waiting: it never runs. Running: its worker kills the run within lease/3 + 1 s. A caller
        waiting on it gets ``kind="cancelled"`` at once. Already finished, dead-lettered or
        cancelled: ``outcome="already_done"``, nothing changed. ``by`` is recorded in the
        dead-letter reason (default: this process). Raises
        :class:`~pgqueue.errors.UnknownMessage` naming an id or key pgqueue does not know, and
        :class:`~pgqueue.errors.CancelError` when the database did not answer.
        """
        return cancelling.on_pool(lambda op: self._run(op, None, "cancel"), self._scrub, target, by)

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (psycopg_pool's ``get_stats()``: ``pool_size``,
        ``pool_available``, ``requests_num``, …)."""
        return self._pool.get_stats()

    @property
    def listener(self) -> ReplyListener | None:
        """This client's reply listener once a call has started it (its counters: ``delivered``,
        ``inline``), else None; the same attribute as ``AsyncClient.listener``."""
        return self._listener

    @property
    def pid(self) -> int:
        """The process whose connections this client holds: after a fork the child's first use
        opens its own (never the parent's sockets) and this becomes the child's pid."""
        return self._pid

    # -- pausing queues (pgqueue.pausing) ---------------------------------------------------

    def pause_queue(self, queue: str, *, reason: str = "", by: str | None = None) -> QueuePause:
        """Stop every worker claiming from ``queue``; idempotent. Returns once no claim of it is
        in flight. Running tasks finish, enqueues still succeed, calls wait (and time out).
        ``by`` (default: this user, host and pid) and ``reason`` are recorded with the pause."""
        who = by if by is not None else pausing.who()
        return pausing.through(
            self._run,
            self._scrub,
            "pause_queue",
            lambda conn: pausing.pause(conn, queue, by=who, reason=reason),
        )

    def resume_queue(self, queue: str, *, by: str | None = None) -> QueuePause:
        """Let workers claim from ``queue`` again (woken at once); idempotent."""
        who = by if by is not None else pausing.who()
        return pausing.through(
            self._run,
            self._scrub,
            "resume_queue",
            lambda conn: pausing.resume(conn, queue, by=who),
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed default client is replaced)."""
        return bool(self._pool_.closed)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
