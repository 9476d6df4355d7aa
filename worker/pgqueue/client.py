"""The producer side: ``enqueue`` (fire and forget) and ``call`` (blocking request-reply).

``call`` enqueues with a fresh reply key and the caller's deadline, then waits for the reply row:
polls with a fast-then-capped backoff clamped to the deadline, taking a pooled connection only
for each poll. On a direct connection a listener thread (:mod:`pgqueue.listening`) may wake it
early on the reply's NOTIFY, which carries a small reply itself on the client's private channel
(the row is then cleared in the background); polling stays the correctness path, so a lost
notification costs latency, never a result.

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

from pgqueue import arguments, db, metrics, sqlfiles
from pgqueue.errors import ConfigurationError, EnqueueError, PgQueueError
from pgqueue.listening import ReplyListener, Waiter
from pgqueue.replies import CallResult, from_row
from pgqueue.settings import ClientSettings

log = logging.getLogger(__name__)

# How late past its timeout call() may return: a statement still in flight at the deadline gets
# this long to answer before its connection is given up (then the rest is scheduling).
CALL_GRACE = 0.1
CALL_MARGIN = 0.25  # documented bound: call(timeout=T) returns within T + CALL_MARGIN

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Message:
    """One message for :meth:`Client.enqueue_many`."""

    task: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    tenant: str = ""
    delay: float = 0.0


def message_params(
    settings: ClientSettings,
    task: object,
    args: object,
    kwargs: object,
    queue: object,
    priority: object,
    tenant: object,
    delay: object,
    reply_key: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """The enqueue statement's parameters, every argument checked (errors name it); shared by
    :class:`Client` and :class:`pgqueue.aclient.AsyncClient`."""
    arguments.check_message(task, queue, priority, tenant)
    after = arguments.seconds("delay", delay, positive=False)
    assert isinstance(tenant, str)
    return {
        "queue": queue,
        "task_name": task,
        "payload": arguments.payload(args, kwargs, tenant, settings.max_payload_bytes),
        "reply_key": reply_key,
        "priority": priority,
        "tenant": tenant,
        "delay": after,
        "deadline": deadline,
        "notify": settings.notify,
        "async_commit": reply_key is not None and settings.async_call_commit,
    }


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
    ) -> int:
        """Put one message on a queue; returns its msg_id.

        Raises :class:`~pgqueue.errors.ConfigurationError` naming a bad argument, and
        :class:`~pgqueue.errors.EnqueueError` when the database did not take the message.
        """
        params = self._params(task, args, kwargs, queue, priority, tenant, delay, None, None)
        return self._insert(params, None)

    def enqueue_many(self, messages: Iterable[Message]) -> list[int]:
        """Put a batch of messages on their queues in one statement; returns their msg_ids."""
        batch = list(messages)
        checked = [
            self._params(m.task, m.args, m.kwargs, m.queue, m.priority, m.tenant, m.delay)
            for m in batch
        ]
        if not batch:
            return []
        params = {
            "queues": [p["queue"] for p in checked],
            "task_names": [p["task_name"] for p in checked],
            "payloads": [p["payload"] for p in checked],
            "reply_keys": [None] * len(batch),
            "priorities": [p["priority"] for p in checked],
            "tenants": [p["tenant"] for p in checked],
            "delays": [p["delay"] for p in checked],
            "notify": self.settings.notify,
        }

        def insert(conn: Conn) -> list[int]:
            rows = conn.execute(sqlfiles.query("enqueue_many"), params).fetchall()
            return [int(r["msg_id"]) for r in rows]

        try:
            return self._run(insert, None, "enqueue_many")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(self._scrub(f"enqueue_many failed: {exc}")) from None

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
    ) -> dict[str, Any]:
        return message_params(
            self.settings, task, args, kwargs, queue, priority, tenant, delay, reply_key, deadline
        )

    def _insert(self, params: dict[str, Any], until: float | None) -> int:
        def insert(conn: Conn) -> int:
            row = conn.execute(sqlfiles.query("enqueue"), params).fetchone()
            assert row is not None
            return int(row["msg_id"])

        try:
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
    ) -> CallResult:
        """Run a task and wait for its reply; never raises, whatever the arguments or the network.

        Returns within ``timeout`` + ``CALL_MARGIN`` (0.25 s). A bad argument is an
        ``enqueue_error`` result whose error names it.
        """
        started = time.monotonic()
        try:
            result = self._call(task, args, kwargs, queue, timeout, priority, tenant, started)
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
    ) -> CallResult:
        listener = self._reply_listener()
        # The listener's prefix routes the reply's NOTIFY to this process alone.
        reply_key = listener.new_key() if listener else uuid.uuid4().hex
        try:
            wait = (
                self.settings.default_timeout
                if timeout is None
                else arguments.seconds("timeout", timeout, positive=True)
            )
            params = self._params(task, args, kwargs, queue, priority, tenant, 0.0, reply_key, wait)
        except ConfigurationError as exc:
            return CallResult.failure(reply_key, "enqueue_error", str(exc))
        deadline = started + wait
        waiter = listener.register(reply_key) if listener else None
        try:
            with db.deadline(deadline + CALL_GRACE):
                try:
                    self._insert(params, deadline)
                except PgQueueError as exc:
                    return CallResult.failure(reply_key, "enqueue_error", str(exc))
                return self._wait(reply_key, deadline, wait, waiter)
        finally:
            if listener:
                listener.unregister(reply_key)

    def wait_for_reply(self, reply_key: str, timeout: float) -> CallResult:
        """Wait for the reply stored under a reply key (for messages another process enqueued).

        A key made by another Client's call is notified on that client's channel: this wait
        then finds the reply by its safety-net poll (every poll_max) rather than at once.
        Never raises: a bad key or timeout is an ``enqueue_error`` result naming it.
        """
        try:
            key = arguments.check_reply_key(reply_key)
            wait = arguments.seconds("timeout", timeout, positive=True)
        except ConfigurationError as exc:
            return CallResult.failure(str(reply_key)[:255], "enqueue_error", str(exc))
        listener = self._reply_listener()
        waiter = listener.register(key) if listener else None
        deadline = time.monotonic() + wait
        try:
            with db.deadline(deadline + CALL_GRACE):
                return self._wait(key, deadline, wait, waiter)
        finally:
            if listener:
                listener.unregister(key)

    def _take(self, reply_key: str, deadline: float) -> CallResult | None:
        def take(conn: Conn) -> dict[str, Any] | None:
            return conn.execute(sqlfiles.query("take_reply"), {"reply_key": reply_key}).fetchone()

        row = self._run(take, deadline + CALL_GRACE, "take_reply")
        if row is None:
            return None
        return from_row(reply_key, row["status"], row["result"], row["error"])

    def _wait(
        self, reply_key: str, deadline: float, wait: float, waiter: Waiter | None
    ) -> CallResult:
        pause = self.settings.poll_initial
        polls = 0
        last_error = ""
        listener = self._listener if waiter is not None else None
        # With LISTEN in place the reply's NOTIFY wakes us: no poll before it can exist.
        skip_poll = listener is not None and listener.live
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

    def _reply_listener(self) -> ReplyListener | None:
        if self.settings.pooled:
            return None  # LISTEN does not survive a transaction pooler
        with self._listener_lock:
            if self._listener is None:
                self._listener = ReplyListener(self.settings.dsn, self.settings)
            return self._listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
