"""The asyncio client's connections: its pool, a live connection per statement, one retry.

Mirrors :mod:`pgqueue.clientpool` on psycopg's async API: a pooled connection that died while idle
is replaced on checkout; a statement that failed before reaching the server is retried once on a
fresh connection (never one that may have run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgqueue import adb, db
from pgqueue.alistening import AsyncReplyListener
from pgqueue.replypacing import ReplyTimes
from pgqueue.settings import ClientSettings

# One logger for the async client, whichever part of it speaks.
log = logging.getLogger("pgqueue.aclient")

T = TypeVar("T")
AsyncConn = adb.AsyncConn


class AsyncClientConnections:
    """The pool, the checkout and retry of a statement; the listener is started by the client."""

    def __init__(
        self,
        dsn: str | None = None,
        settings: ClientSettings | None = None,
        *,
        application_name: str = "pgqueue-async-client",
    ) -> None:
        base = settings or ClientSettings()
        self.settings = base.model_copy(update={"dsn": dsn}) if dsn else base
        # Parsed here, once: a malformed DSN is a ConfigurationError that never shows it.
        self._conninfo = db.conninfo(self.settings.dsn, self.settings, pooled=self.settings.pooled)
        self._application_name = application_name
        self._pool = self._new_pool()
        self._listener: AsyncReplyListener | None = None
        # When this client's recent replies were stored: the polls' timing (pgqueue.replypacing).
        self._reply_times = ReplyTimes(self.settings.poll_initial)
        self._opened = False
        self._closed = False
        self._open_lock = asyncio.Lock()

    # Mirrors pgqueue.clientpool (psycopg's sync API): the same steps on the
    # event loop; a change to one is a change to both.
    def _new_pool(self) -> AsyncConnectionPool[AsyncConn]:
        bound = db.io_bound(self.settings)

        async def configure(conn: AsyncConn) -> None:
            conn.io_bound = bound  # type: ignore[attr-defined]

        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.settings.pool_size,
            kwargs={
                **adb.connect_kwargs(self.settings, self._application_name),
                "connect_timeout": max(1, round(self.settings.connect_timeout)),
            },
            configure=configure,
            timeout=self.settings.connect_timeout,
            open=False,
            name=self._application_name,
            connection_class=adb.BoundedAsyncConnection,
        )

    def _scrub(self, text: str) -> str:
        return db.scrub(text, self.settings.dsn)

    # -- connections -----------------------------------------------------------------------

    async def _checkout(self) -> AsyncConn:
        """A live pooled connection: one that died while idle is dropped without a round trip."""
        for _ in range(self.settings.pool_size + 1):
            conn = await self._pool.getconn(timeout=self.settings.connect_timeout)
            if not db.is_dead(conn):  # type: ignore[arg-type]
                return conn
            await conn.close()
            await self._pool.putconn(conn)  # closed: the pool discards it and opens a new one
        raise psycopg.OperationalError("no live connection in the pool")

    async def _run(self, op: Callable[[AsyncConn], Awaitable[T]], what: str) -> T:
        """Run ``op`` on a pooled connection, once more on a fresh one if the statement never
        reached the server (never when it may have run)."""
        for attempt in (1, 2):
            conn = await self._checkout()
            try:
                return await op(conn)
            except psycopg.OperationalError as exc:
                if attempt == 1 and db.unsent(exc):
                    log.debug("%s: retrying on a fresh connection after %s", what, exc)
                    await conn.close()
                    continue
                raise
            finally:
                await self._pool.putconn(conn)
        raise AssertionError("unreachable")  # pragma: no cover
