"""Enqueue in a SQLAlchemy session's transaction (SQLAlchemy 2, the ``postgresql+psycopg`` driver).

::

    from pgqueue.contrib import sqlalchemy as pgq

    with Session(engine) as session, session.begin():
        session.add(Order(id=order_id))
        pgq.enqueue(session, client, "orders.confirm", [order_id])   # commits with the order
        # with a task handle: confirm.using(conn=pgq.connection(session)).delay(order_id)

The message is written on the session's own connection, inside its transaction: a rollback
leaves no message, and the workers are woken by the commit. SQLAlchemy is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue.errors import ConfigurationError

if TYPE_CHECKING:
    from pgqueue.client import Client, Message, Submitted


def connection(session: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy ``Session`` or ``Connection``, in the
    session's transaction (a session without one begins it, as ``Session.connection()`` does)."""
    try:
        from sqlalchemy.engine import Connection  # noqa: PLC0415 - optional dependency
        from sqlalchemy.orm import Session  # noqa: PLC0415
    except ImportError:
        raise ConfigurationError(
            "session", "SQLAlchemy is not installed (pip install 'pgqueue[sqlalchemy]')"
        ) from None
    if isinstance(session, Session):
        bound = session.connection()
    elif isinstance(session, Connection):
        bound = session
    else:
        raise ConfigurationError(
            "session",
            f"must be a SQLAlchemy Session or Connection, got {type(session).__name__}",
        )
    raw = bound.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigurationError(
            "session",
            "the engine must use the psycopg (3) driver (a postgresql+psycopg:// URL), "
            f"not {type(raw).__module__}",
        )
    return raw


def enqueue(
    session: Any,
    client: Client,
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> int:
    """``client.enqueue`` in the session's transaction; returns the msg_id."""
    return client.enqueue(task, args, kwargs, conn=connection(session), **options)


def enqueue_many(session: Any, client: Client, messages: Iterable[Message]) -> list[int]:
    """``client.enqueue_many`` in the session's transaction; returns the msg_ids."""
    return client.enqueue_many(messages, conn=connection(session))


def submit(
    session: Any,
    client: Client,
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Submitted:
    """``client.submit`` in the session's transaction: collect the result after the commit."""
    return client.submit(task, args, kwargs, conn=connection(session), **options)
