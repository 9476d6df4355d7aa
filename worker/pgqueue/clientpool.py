"""The client's connections: one pool per process, a live connection per statement, one retry.

A pooled connection that died while idle is replaced on checkout; a statement that failed before
reaching the server is retried once on a fresh connection (never one that may have run). A client
created before a fork opens its own pool in the child. The reply listener (:mod:`pgqueue.listening`)
is started here on first use, on a direct connection only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from pgqueue import db
from pgqueue.listening import ReplyListener
from pgqueue.replypacing import ReplyTimes
from pgqueue.settings import ClientSettings

# One logger for the client, whichever part of it speaks.
log = logging.getLogger("pgqueue.client")

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]


class ClientConnections:
    """The pool, the checkout and retry of a statement, and the reply listener."""

    def __init__(self, dsn: str | None = None, settings: ClientSettings | None = None) -> None:
        base = settings or ClientSettings()
        self.settings = base.model_copy(update={"dsn": dsn}) if dsn else base
        # Parsed here, once: a malformed DSN is a ConfigurationError that never shows it.
        self._conninfo = db.conninfo(self.settings.dsn, self.settings, pooled=self.settings.pooled)
        self._listener: ReplyListener | None = None
        self._listener_lock = threading.Lock()
        # When this client's recent replies were stored: the polls' timing (pgqueue.replypacing).
        self._reply_times = ReplyTimes(self.settings.poll_initial)
        self._pid = os.getpid()
        self._pool_ = self._new_pool()

    # Mirrored in pgqueue.aclientpool (psycopg's async API): the same steps, sync here; a change to
    # one is a change to both (a shared helper would have to be both sync and async).
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
            self._forked()
        return self._pool_

    def _forked(self) -> None:
        """In a child after a fork: a pool and a listener of its own (the parent's sockets and
        threads are not this process's)."""
        with self._listener_lock:
            if os.getpid() != self._pid:
                self._pool_ = self._new_pool()
                self._listener = None
                # Its lock may have been held by a thread the fork did not copy.
                self._reply_times = ReplyTimes(self.settings.poll_initial)
                self._pid = os.getpid()

    def _scrub(self, text: str) -> str:
        return db.scrub(text, self.settings.dsn)

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

    def _reply_listener(self) -> ReplyListener | None:
        if self.settings.pooled or self.settings.reply_wait == "poll":
            return None  # LISTEN does not survive a transaction pooler; or polls cost less
        if os.getpid() != self._pid:
            self._forked()  # a call's key comes before its pool: not the parent's listener
        elif self._listener is not None:
            return self._listener  # every call after the first: no lock
        with self._listener_lock:
            if self._listener is None:
                self._listener = ReplyListener(self.settings.dsn, self.settings)
            return self._listener
