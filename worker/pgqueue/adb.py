"""Async connections to Postgres, bounded like :mod:`pgqueue.db`'s, for :class:`AsyncClient`.

The DSN, its I/O bounds and the scrubbing of its password come from :mod:`pgqueue.db`; what is
particular to asyncio is how a wait ends. A caller bounds its work with ``asyncio.timeout``;
psycopg, when such a timeout cancels a statement in flight, sends the server a cancel request
and then waits up to 5 s for the statement to end (10 s in all, on a path that may be stalled):
:class:`BoundedAsyncConnection` instead gives the session up at once (it reimplements
``AsyncConnection.wait``, a psycopg internal, for that), as
:class:`pgqueue.db.BoundedConnection` does when its deadline passes, so a cancelled call
returns when asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import waiting
from psycopg.abc import RV, PQGen
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from pgqueue import db
from pgqueue.settings import ConnectionSettings

AsyncConn = psycopg.AsyncConnection[dict[str, Any]]


class BoundedAsyncConnection(psycopg.AsyncConnection[Any]):
    """An async connection whose waits for the server end on a bound or a cancellation.

    ``io_bound`` (seconds) caps a wait that has no timeout of its own (the statement timeout
    plus the margin); waiting for notifications is left alone. A cancelled statement closes
    the session: what the server did with it is unknown, and a stalled path would not carry a
    cancel request anyway.
    """

    io_bound: float | None = None

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's signature
    ) -> RV:
        bound = self.io_bound
        own = (
            bound is None
            or (timeout is not None and timeout <= bound)
            or getattr(gen, "__name__", "") == "notifies"
        )
        try:
            # Not super().wait(): on a cancellation it would first try a cancel request.
            return await waiting.wait_async(
                gen, self.pgconn.socket, interval=interval, timeout=timeout if own else bound
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                self.pgconn.finish()
            raise
        except pg_errors._WaitTimeout:
            if own:
                raise  # the caller's own timeout (notifies): the session is fine
            self.pgconn.finish()
            raise db.NoAnswer(
                f"no answer from the server within {bound:.3g}s; connection closed"
            ) from None


def connect_kwargs(settings: ConnectionSettings, application_name: str) -> dict[str, Any]:
    """psycopg's connection options for a client session (the pool's and the listener's)."""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        # prepare_threshold=None disables server-side prepared statements (pooler-safe).
        "prepare_threshold": None if settings.pooled else 5,
        "application_name": application_name,
    }


async def connect(dsn: str, settings: ConnectionSettings, *, application_name: str) -> AsyncConn:
    """A new bounded async connection with dict rows, in autocommit; errors never show the
    password, and the whole connect (name lookup included) ends by ``connect_timeout``."""
    info = db.conninfo(dsn, settings, pooled=settings.pooled)
    try:
        async with asyncio.timeout(settings.connect_timeout + 1):
            conn = await BoundedAsyncConnection.connect(
                info,
                connect_timeout=max(1, round(settings.connect_timeout)),
                **connect_kwargs(settings, application_name),
            )
    except TimeoutError:
        raise psycopg.OperationalError(
            f"no connection within {settings.connect_timeout:g}s"
        ) from None
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(db.scrub(str(exc), dsn)) from None
    conn.io_bound = db.io_bound(settings)
    return conn
