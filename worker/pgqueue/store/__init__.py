"""The data-access layer: every named query of ``sql/queries.sql`` is said to Postgres from this
package and from nowhere else (architecture §11).

One module per concept: :mod:`~pgqueue.store.leases` (the worker core: a message's lease, from
the claim to the settle write), :mod:`~pgqueue.store.calls` (what a client sends: a message, a
reply taken, its reply listener's statements), :mod:`~pgqueue.store.control` (cancel, pause, the
gate flag, the held messages a cancel removed), :mod:`~pgqueue.store.inspection` (what the CLI,
the web console and the samplers read), :mod:`~pgqueue.store.cleanup` (dead letters, purges, the
sweep), :mod:`~pgqueue.store.fleet` (worker registry, waiting marks, periodic ticks, vacuum, the
depth sampler's lock) and :mod:`~pgqueue.store.schema` (the migrations' bookkeeping). The
modules outside decide what to ask and what an answer or an error means; a function here only
says it, and its docstring names the query. Only this package (and :mod:`pgqueue.migrating`, for
the migration files) imports :mod:`pgqueue.sqlfiles`: ``.importlinter`` says so.

A statement both clients run (the sync one on psycopg's blocking API, the asyncio one on its
async API) is built once, as a :data:`Statement`: the query, cached per process by
:func:`pgqueue.sqlfiles.query`, and its parameters. The runners below execute one, sync or async;
they are the only twins, two lines each. A statement only sync code runs is one function that
takes the connection and runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

Row = dict[str, Any]
Conn = psycopg.Connection[Row]
AsyncConn = psycopg.AsyncConnection[Row]
Statement = tuple[sql.SQL, Mapping[str, Any]]
"""A named query and its parameters, built by a function of this package."""


# Each runner unpacks the statement by assignment: a starred call costs more, on every call of the
# RPC path (enqueue, reply poll).


def one(conn: Conn, statement: Statement) -> Row | None:
    """The statement's first row (None: no row)."""
    query, params = statement
    return conn.execute(query, params).fetchone()


def every(conn: Conn, statement: Statement) -> list[Row]:
    """The statement's rows."""
    query, params = statement
    return conn.execute(query, params).fetchall()


def run(conn: Conn, statement: Statement) -> None:
    """The statement, its rows (if any) unread."""
    query, params = statement
    conn.execute(query, params)


async def aone(conn: AsyncConn, statement: Statement) -> Row | None:
    """:func:`one` on an asyncio connection."""
    query, params = statement
    return await (await conn.execute(query, params)).fetchone()


async def aevery(conn: AsyncConn, statement: Statement) -> list[Row]:
    """:func:`every` on an asyncio connection."""
    query, params = statement
    return await (await conn.execute(query, params)).fetchall()


async def arun(conn: AsyncConn, statement: Statement) -> None:
    """:func:`run` on an asyncio connection."""
    query, params = statement
    await conn.execute(query, params)
