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
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from pgqueue import arguments, db, metrics, producing, sqlfiles
from pgqueue.errors import ConfigurationError, EnqueueError, PgQueueError
from pgqueue.listening import ReplyListener, Waiter
from pgqueue.producing import Message, TaskOptions
from pgqueue.replies import CallResult, from_row
from pgqueue.settings import ClientSettings

log = logging.getLogger(__name__)

# How late past its timeout call() may return: a statement still in flight at the deadline gets
# this long to answer before its connection is given up (then the rest is scheduling).
CALL_GRACE = 0.1
CALL_MARGIN = 0.25  # documented bound: call(timeout=T) returns within T + CALL_MARGIN

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]


# Message and TaskOptions live in pgqueue.producing (shared with the asyncio client).
__all__ = [
    "CALL_MARGIN",
    "Client",
    "Message",
    "Submitted",
    "TaskOptions",
]


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


class Client:
    """Enqueue tasks and call them; safe to share between threads."""

    def __init__(self, dsn: str | None = None, settings: ClientSettings | None = None) -> None:
        base = settings or ClientSettings()
        self.settings = base.model_copy(update={"dsn": dsn}) if dsn else base
        # Parsed here, once: a malformed DSN is a ConfigurationError that never shows it.
        self._conninfo = db.conninfo(self.settings.dsn, self.settings, pooled=self.settings.pooled)
        self._listener: ReplyListener | None = None
        self._listener_lock = threading.Lock()
        self._pid = os.getpid()
        self._pool_ = self._new_pool()

    def _new_pool(self) -> ConnectionPool[Conn]:
        bound = db.io_bound(self.settings)

        def configure(conn: Conn) -> None:
            conn.io_bound = bound  # type: ignore[attr-defined]

        return ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.settings.pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": None if self.settings.pooled else 5,
                "application_name": "pgqueue-client",
            },
            configure=configure,
            timeout=self.settings.connect_timeout,
            open=True,
            name="pgqueue-client",
            connection_class=db.BoundedConnection,
        )

    @property
    def _pool(self) -> ConnectionPool[Conn]:
        """The pool of this process: a client created before a fork (gunicorn --preload, Celery
        prefork) must not share the parent's sockets and pool threads, so a child opens its own."""
        if os.getpid() != self._pid:
            with self._listener_lock:
                if os.getpid() != self._pid:
                    self._pool_ = self._new_pool()
                    self._listener = None
                    self._pid = os.getpid()
        return self._pool_

    def _scrub(self, text: str) -> str:
        return db.scrub(text, self.settings.dsn)

    # -- connections -----------------------------------------------------------------------

    def _checkout(self, until: float | None) -> Conn:
        """A live pooled connection: one that died while idle is dropped without a round trip."""
        pool = self._pool
        for _ in range(self.settings.pool_size + 1):
            left = self.settings.connect_timeout if until is None else until - time.monotonic()
            if left <= 0:
                raise PoolTimeout("no connection before the deadline")
            conn = pool.getconn(timeout=left)
            if not db.is_dead(conn):
                return conn
            conn.close()
            pool.putconn(conn)  # closed: the pool discards it and opens a new one
        raise psycopg.OperationalError("no live connection in the pool")

    def _run(self, op: Callable[[Conn], T], until: float | None, what: str) -> T:
        """Run ``op`` on a pooled connection, once more on a fresh one if the statement never
        reached the server (never when it may have run)."""
        for attempt in (1, 2):
            conn = self._checkout(until)
            try:
                return op(conn)
            except psycopg.OperationalError as exc:
                if attempt == 1 and db.unsent(exc):
                    log.debug("%s: retrying on a fresh connection after %s", what, exc)
                    conn.close()
                    continue
                raise
            finally:
                self._pool.putconn(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- fire and forget -------------------------------------------------------------------

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
        query = sqlfiles.query("enqueue_many")

        def insert(conn: Conn) -> list[int]:
            return [int(r["msg_id"]) for r in conn.execute(query, params).fetchall()]

        try:
            if conn is not None:
                return [int(r["msg_id"]) for r in producing.execute_on(conn, query, params)]
            return self._run(insert, None, "enqueue_many")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(self._scrub(f"enqueue_many failed: {exc}")) from None

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

    @staticmethod
    def _attached_key(row: Mapping[str, Any], key: str, unique_key: object) -> str:
        """The reply key to wait on: ours, or that of the message holding the unique key."""
        if row.get("created", True):
            return key
        holder = row.get("reply_key")
        if holder is None:
            raise EnqueueError(
                f"unique key {unique_key!r:.80} is held by message {row['msg_id']}, which was "
                "enqueued without a reply (enqueue, not submit or call): no reply to attach to"
            )
        return str(holder)

    def _reply_key(self, *, shared: bool) -> str:
        if shared:
            return producing.shared_key()
        listener = self._reply_listener()
        # The listener's prefix routes the reply's NOTIFY to this process alone.
        return listener.new_key() if listener else uuid.uuid4().hex

    def _params(
        self,
        task: object,
        args: object,
        kwargs: object,
        queue: object,
        priority: object,
        tenant: object,
        delay: object,
        reply_key: str | None = None,
        deadline: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The enqueue statement's parameters, every argument checked (errors name it)."""
        return producing.message_params(
            self.settings,
            task,
            args,
            kwargs,
            queue,
            priority,
            tenant,
            delay,
            reply_key,
            deadline,
            **extra,
        )

    def _insert(
        self, params: dict[str, Any], until: float | None, own: psycopg.Connection[Any] | None
    ) -> dict[str, Any]:
        """The message's row (msg_id; with a unique key also reply_key and created)."""
        query = producing.statement(params)

        def insert(conn: Conn) -> dict[str, Any]:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return row

        try:
            if own is not None:
                # The caller's transaction: never retried here (it may have run), never pooled.
                return producing.execute_on(own, query, params)[0]
            return self._run(insert, until, "enqueue")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(
                self._scrub(f"enqueue of {params['task_name']!r} failed: {exc}")
            ) from None

    # -- request-reply ---------------------------------------------------------------------

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
    ) -> CallResult:
        """Run a task and wait for its reply; never raises, whatever the arguments or the network.

        Returns within ``timeout`` + ``CALL_MARGIN`` (0.25 s). A bad argument is an
        ``enqueue_error`` result whose error names it. With a ``unique_key`` held by a call
        queued or running, this waits for that call's reply instead of running the task twice.
        """
        started = time.monotonic()
        try:
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
            error = self._scrub(f"{type(exc).__name__}: {exc}")
            log.error("call failed unexpectedly: %s", error)
            result = CallResult.failure("", "enqueue_error", error)
        label = task if isinstance(task, str) and arguments.valid_task(task) else "<invalid>"
        metrics.CALL_DURATION.labels(label, result.kind).observe(time.monotonic() - started)
        return result

    def _call(
        self,
        task: object,
        args: object,
        kwargs: object,
        queue: object,
        timeout: object,
        priority: object,
        tenant: object,
        started: float,
        extra: dict[str, Any],
    ) -> CallResult:
        unique = extra["unique_key"] is not None
        reply_key = self._reply_key(shared=unique)
        try:
            wait = (
                self.settings.default_timeout
                if timeout is None
                else arguments.seconds("timeout", timeout, positive=True)
            )
            params = self._params(
                task, args, kwargs, queue, priority, tenant, 0.0, reply_key, wait, **extra
            )
        except ConfigurationError as exc:
            return CallResult.failure(reply_key, "enqueue_error", str(exc))
        deadline = started + wait
        listener = self._reply_listener()
        # A private key is registered before its message exists; a unique call's key is known
        # only once the statement says which message holds it, so it polls first.
        waiter = listener.register(reply_key) if listener and not unique else None
        try:
            with db.deadline(deadline + CALL_GRACE):
                try:
                    row = self._insert(params, deadline, None)
                    reply_key = self._attached_key(row, reply_key, extra["unique_key"])
                except PgQueueError as exc:
                    return CallResult.failure(reply_key, "enqueue_error", str(exc))
                if unique and listener:
                    waiter = listener.register(reply_key)
                return self._wait(reply_key, deadline, wait, waiter, poll_first=unique)
        finally:
            if listener and waiter is not None:
                listener.unregister(reply_key, waiter)

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

    def _take(self, reply_key: str, deadline: float) -> CallResult | None:
        # A shared reply (a unique call's) is read by every attached caller: never deleted here.
        query = (
            sqlfiles.query("peek_reply")
            if producing.is_shared(reply_key)
            else sqlfiles.query("take_reply")
        )

        def take(conn: Conn) -> dict[str, Any] | None:
            return conn.execute(query, {"reply_key": reply_key}).fetchone()

        row = self._run(take, deadline + CALL_GRACE, "take_reply")
        if row is None:
            return None
        return from_row(reply_key, row["status"], row["result"], row["error"])

    def _wait(
        self,
        reply_key: str,
        deadline: float,
        wait: float,
        waiter: Waiter | None,
        *,
        poll_first: bool = False,
    ) -> CallResult:
        pause = self.settings.poll_initial
        polls = 0
        last_error = ""
        listener = self._listener if waiter is not None else None
        # With LISTEN in place the reply's NOTIFY wakes us: no poll before it can exist.
        skip_poll = listener is not None and listener.live and not poll_first
        while True:
            if waiter is not None and waiter.reply is not None:
                return from_row(reply_key, *waiter.reply)  # it came in the NOTIFY
            if not skip_poll:
                polls += 1
                try:
                    result = self._take(reply_key, deadline)
                    if result is not None:
                        return result
                    last_error = ""
                except (psycopg.Error, PoolTimeout, OSError) as exc:
                    # The database is away: keep trying until the deadline; the reply waits.
                    last_error = self._scrub(f"; last poll failed: {type(exc).__name__}: {exc}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info(
                    "call timed out: reply_key=%s timeout=%.3fs polls=%d", reply_key, wait, polls
                )
                return CallResult.failure(
                    reply_key, "timeout", f"no reply within {wait:g}s ({polls} polls){last_error}"
                )
            if waiter is not None and listener is not None and listener.live:
                # Trusting NOTIFY: poll when woken, and every poll_max as the safety net.
                waiter.event.wait(min(self.settings.poll_max, remaining))
                waiter.event.clear()
                skip_poll = False
                continue
            skip_poll = False
            nap = min(pause, remaining)
            if waiter is not None:
                waiter.event.wait(nap)
                waiter.event.clear()
            else:
                time.sleep(nap)
            # Flat and fast while a short task's reply is likely, then doubling up to the cap.
            if polls >= self.settings.poll_flat:
                pause = min(pause * 2, self.settings.poll_max)

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

    def _reply_listener(self) -> ReplyListener | None:
        if self.settings.pooled or self.settings.reply_wait == "poll":
            return None  # LISTEN does not survive a transaction pooler; or polls cost less
        with self._listener_lock:
            if self._listener is None:
                self._listener = ReplyListener(self.settings.dsn, self.settings)
            return self._listener

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
