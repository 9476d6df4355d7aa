"""The producer side: ``enqueue`` (fire and forget) and ``call`` (blocking request-reply).

``call`` enqueues with a fresh reply key and the caller's deadline, then waits for the reply row:
polls with a fast-then-capped backoff clamped to the deadline, taking a pooled connection only
for each poll. On a direct connection a listener thread may wake it early on the reply's NOTIFY,
which carries a small reply itself (the row is then cleared in the background); polling stays
the correctness path, so a lost notification costs latency, never a result.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pgqueue import db, metrics, sqlfiles
from pgqueue.errors import ConfigurationError, PgQueueError
from pgqueue.replies import CallResult, from_row
from pgqueue.settings import ClientSettings, check_queue_name

log = logging.getLogger(__name__)

REPLY_CHANNEL = "pgqueue_reply"  # shared: replies to keys without a listener's prefix


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


def _check(task: str, queue: str, priority: int, delay: float) -> None:
    if not task:
        raise ConfigurationError("task", "a task name is required")
    try:
        check_queue_name(queue)
    except ValueError as exc:
        raise ConfigurationError("queue", str(exc)) from None
    if not 1 <= priority <= 10:
        raise ConfigurationError("priority", f"must be 1..10, got {priority}")
    if delay < 0:
        raise ConfigurationError("delay", f"must be ≥ 0 seconds, got {delay}")


def _payload(args: Sequence[Any], kwargs: Mapping[str, Any] | None, tenant: str) -> str:
    try:
        return json.dumps(
            {"args": list(args), "kwargs": dict(kwargs or {}), "headers": {}, "tenant": tenant}
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError("args", f"arguments must be JSON-serialisable: {exc}") from exc


@dataclass(slots=True)
class _Waiter:
    """One waiting call: woken by its NOTIFY, which may carry the reply itself."""

    event: threading.Event = field(default_factory=threading.Event)
    reply: tuple[object, object, object] | None = None  # status, result, error


def _parse_note(payload: str) -> tuple[str, tuple[object, object, object] | None]:
    """(reply key, the reply if the payload carries it): see ``pgqueue.reply_note``."""
    if payload.startswith("{"):
        try:
            note = json.loads(payload)
            return str(note["k"]), (note["s"], note["r"], note["e"])
        except (ValueError, KeyError, TypeError):
            pass  # a hand-made key that merely starts with "{"
    return payload, None


class _ReplyListener:
    """One LISTEN connection per client that wakes the callers waiting on a reply key.

    While it is ``live`` (LISTEN in place) a reply cannot be stored without its NOTIFY reaching
    this session, so waiters poll only as a safety net; on every (re)connect it wakes all of them
    once, which covers a reply stored while it was away.

    Reply keys of this listener's callers start with its ``prefix``; workers notify such a key
    on this listener's own channel (``pgqueue.reply_channel`` in the schema), so N caller
    processes do not each wake for every reply. It also listens on the shared channel, which
    carries replies to other keys (hand-made ones, or from workers before migration 0002).

    A reply that fits in a NOTIFY payload arrives in it (``pgqueue.reply_note``): the waiter
    returns it without reading the row, and this thread deletes the rows it handed over in one
    statement per batch, between two reads of the socket. Replies that arrive for no waiter
    (the call timed out meanwhile) are left to the retention sweep, like any unread reply.
    """

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._waiters: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handed: list[str] = []  # reply keys whose rows are to be deleted
        self.live = False
        self.prefix = secrets.token_hex(8)
        self.delivered = 0  # notifications received (all keys), for tests and debugging
        self.inline = 0  # of them, replies read from the payload
        self._thread = threading.Thread(
            target=self._run, name="pgqueue-reply-listener", daemon=True
        )
        self._thread.start()

    def new_key(self) -> str:
        """A reply key routed to this listener whose reply may come in the payload."""
        return f"{self.prefix}.i.{uuid.uuid4().hex}"

    def register(self, reply_key: str) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            self._waiters[reply_key] = waiter
        return waiter

    def unregister(self, reply_key: str) -> None:
        with self._lock:
            self._waiters.pop(reply_key, None)

    def _deliver(self, payload: str) -> None:
        self.delivered += 1
        key, reply = _parse_note(payload)
        with self._lock:
            waiter = self._waiters.get(key)
            if waiter is None:
                return
            if reply is not None:
                self.inline += 1
                waiter.reply = reply
                self._handed.append(key)
        waiter.event.set()

    def _clear_handed(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        with self._lock:
            keys, self._handed = self._handed, []
        if keys:
            conn.execute(sqlfiles.query("clear_replies"), {"reply_keys": keys})

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with db.connect(self._dsn, connect_timeout=self._connect_timeout) as conn:
                    conn.execute(f"LISTEN {REPLY_CHANNEL}")
                    conn.execute(f"LISTEN {REPLY_CHANNEL}_{self.prefix}")
                    backoff = 0.1
                    with self._lock:
                        self.live = True
                        for waiter in self._waiters.values():
                            waiter.event.set()
                    while not self._stop.is_set():
                        # Rounds of 0.2 s: a handed-over row is deleted within that.
                        for note in conn.notifies(timeout=0.2):
                            self._deliver(note.payload)
                        self._clear_handed(conn)
            except psycopg.Error as exc:
                # Callers poll on their fast schedule meanwhile; this only costs latency.
                self.live = False
                log.debug("reply listener reconnecting after %s", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.live = False


class Client:
    """Enqueue tasks and call them; safe to share between threads."""

    def __init__(self, dsn: str | None = None, settings: ClientSettings | None = None) -> None:
        base = settings or ClientSettings()
        self.settings = base.model_copy(update={"dsn": dsn}) if dsn else base
        if not self.settings.dsn:
            raise ConfigurationError("dsn", "no database given (set PGQUEUE_DSN or pass dsn)")
        self._listener: _ReplyListener | None = None
        self._listener_lock = threading.Lock()
        self._pid = os.getpid()
        self._pool_ = self._new_pool()

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[dict[str, Any]]]:
        return ConnectionPool(
            self.settings.dsn,
            min_size=1,
            max_size=self.settings.pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": None if self.settings.pooled else 5,
                "application_name": "pgqueue-client",
            },
            timeout=self.settings.connect_timeout,
            open=True,
            name="pgqueue-client",
            connection_class=psycopg.Connection[dict[str, Any]],
        )

    @property
    def _pool(self) -> ConnectionPool[psycopg.Connection[dict[str, Any]]]:
        """The pool of this process: a client created before a fork (gunicorn --preload, Celery
        prefork) must not share the parent's sockets and pool threads, so a child opens its own."""
        if os.getpid() != self._pid:
            with self._listener_lock:
                if os.getpid() != self._pid:
                    self._pool_ = self._new_pool()
                    self._listener = None
                    self._pid = os.getpid()
        return self._pool_

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
        """Put one message on a queue; returns its msg_id. Raises PgQueueError on failure."""
        _check(task, queue, priority, delay)
        return self._insert(task, args, kwargs, queue, priority, tenant, delay, None, None)

    def enqueue_many(self, messages: Iterable[Message]) -> list[int]:
        """Put a batch of messages on their queues in one statement; returns their msg_ids."""
        batch = list(messages)
        for m in batch:
            _check(m.task, m.queue, m.priority, m.delay)
        if not batch:
            return []
        params = {
            "queues": [m.queue for m in batch],
            "task_names": [m.task for m in batch],
            "payloads": [_payload(m.args, m.kwargs, m.tenant) for m in batch],
            "reply_keys": [None] * len(batch),
            "priorities": [m.priority for m in batch],
            "tenants": [m.tenant for m in batch],
            "delays": [float(m.delay) for m in batch],
            "notify": self.settings.notify,
        }
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(sqlfiles.query("enqueue_many"), params).fetchall()
        except psycopg.Error as exc:
            raise PgQueueError(f"enqueue_many failed: {exc}") from exc
        return [int(r["msg_id"]) for r in rows]

    def _insert(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        queue: str,
        priority: int,
        tenant: str,
        delay: float,
        reply_key: str | None,
        deadline: float | None,
    ) -> int:
        params = {
            "queue": queue,
            "task_name": task,
            "payload": _payload(args, kwargs, tenant),
            "reply_key": reply_key,
            "priority": priority,
            "tenant": tenant,
            "delay": float(delay),
            "deadline": deadline,
            "notify": self.settings.notify,
            "async_commit": reply_key is not None and self.settings.async_call_commit,
        }
        try:
            with self._pool.connection() as conn:
                row = conn.execute(sqlfiles.query("enqueue"), params).fetchone()
        except psycopg.Error as exc:
            raise PgQueueError(f"enqueue of {task!r} failed: {exc}") from exc
        assert row is not None
        return int(row["msg_id"])

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
        """Run a task and wait for its reply; never raises for transport or task errors."""
        started = time.monotonic()
        result = self._call(task, args, kwargs, queue, timeout, priority, tenant, started)
        metrics.CALL_DURATION.labels(task, result.kind).observe(time.monotonic() - started)
        return result

    def _call(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        queue: str,
        timeout: float | None,
        priority: int,
        tenant: str,
        started: float,
    ) -> CallResult:
        wait = self.settings.default_timeout if timeout is None else float(timeout)
        listener = self._reply_listener()
        # The listener's prefix routes the reply's NOTIFY to this process alone.
        reply_key = listener.new_key() if listener else uuid.uuid4().hex
        if wait <= 0:
            return CallResult.failure(
                reply_key, "enqueue_error", f"timeout: must be > 0, got {wait}"
            )
        deadline = started + wait
        waiter = listener.register(reply_key) if listener else None
        try:
            try:
                _check(task, queue, priority, 0.0)
                self._insert(task, args, kwargs, queue, priority, tenant, 0.0, reply_key, wait)
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
        """
        listener = self._reply_listener()
        waiter = listener.register(reply_key) if listener else None
        try:
            return self._wait(reply_key, time.monotonic() + timeout, timeout, waiter)
        finally:
            if listener:
                listener.unregister(reply_key)

    def _wait(
        self, reply_key: str, deadline: float, wait: float, waiter: _Waiter | None
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
                    with self._pool.connection() as conn:
                        row = conn.execute(
                            sqlfiles.query("take_reply"), {"reply_key": reply_key}
                        ).fetchone()
                    if row is not None:
                        return from_row(reply_key, row["status"], row["result"], row["error"])
                    last_error = ""
                except (psycopg.Error, OSError) as exc:
                    # The database is away: keep trying until the deadline; the reply waits.
                    last_error = f"; last poll failed: {type(exc).__name__}: {exc}".strip()
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

    def _reply_listener(self) -> _ReplyListener | None:
        if self.settings.pooled:
            return None  # LISTEN does not survive a transaction pooler
        with self._listener_lock:
            if self._listener is None:
                self._listener = _ReplyListener(self.settings.dsn, self.settings.connect_timeout)
            return self._listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
